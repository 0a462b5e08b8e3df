"""worker/inference."""
