"""worker/accuracy."""
