"""worker/batch."""
