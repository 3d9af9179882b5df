"""CDC data platform: PostgreSQL -> Debezium/Kafka -> Spark -> Cassandra, Redis, REST."""
