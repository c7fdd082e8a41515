"""leadflow's shared package: event contracts, topic names and thin Kafka/MongoDB plumbing."""
