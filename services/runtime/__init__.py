"""What every service shares: settings, Kafka wiring, topics, files, metrics, health."""
