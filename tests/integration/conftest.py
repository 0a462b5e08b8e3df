"""The worker's broker tests share the fixtures of tests/conftest.py (trained_store, topics,
``library``: a test run once per Kafka client library)."""
