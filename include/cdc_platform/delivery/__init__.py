"""Delivery to the REST microservice: the retrying batch client and the durable Kafka DLQ."""
