"""worker/transport."""
