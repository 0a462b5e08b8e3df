"""worker/transport/kafka_python."""
