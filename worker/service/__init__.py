"""worker/service."""
