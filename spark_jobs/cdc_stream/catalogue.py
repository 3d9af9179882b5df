"""The content catalogue events are enriched with: content id -> length_seconds.

It is read from the content topic, which keeps every content change forever: the latest change
per id wins (by source position), and a deleted content is unknown. The core query joins its
events with it (a stream-static join), so enrichment depends on Kafka alone, never on a sink.

The catalogue is cached, and read again only when the content topic has grown: re-reading it
for every micro-batch would cost a Kafka read and a shuffle per batch. An event whose content
arrived after the last refresh waits in the waiting room until the next one, never longer.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cdc_platform.kafka_clients import client_config
from cdc_stream import transforms
from cdc_stream.kafka_options import spark_kafka_options

log = logging.getLogger(__name__)

DELETE = "d"


def latest_content(content_changes: DataFrame) -> DataFrame:
    """schemas.CONTENT_CHANGE rows -> schemas.CONTENT_LOOKUP: one row per content id whose latest
    change is not a delete."""
    latest = content_changes.groupBy("id").agg(
        F.max_by(F.struct(F.col("op"), F.col("length_seconds")), F.col("position")).alias("latest"))
    return latest.filter(F.col("latest.op") != F.lit(DELETE)).select(
        F.col("id"), F.col("latest.length_seconds").alias("length_seconds"))


class ContentCatalogue:
    def __init__(self, spark: SparkSession, kafka: Mapping, topic: str):
        """``kafka``: the connection's confluent-kafka client config."""
        self.kafka = kafka
        self.topic = topic
        records = (
            spark.read.format("kafka")
            .options(**spark_kafka_options(kafka))
            .option("subscribe", topic)
            .option("startingOffsets", "earliest")
            .option("endingOffsets", "latest")
            .load()
        )
        # Rejected content records are quarantined by the content query.
        changes, _rejected = transforms.parse_content(records)
        # The plan to join with: Spark substitutes its cached data, refreshed by refresh(). One
        # partition: every core batch broadcasts it, a job with a task per partition.
        self.frame = latest_content(changes).coalesce(1)
        self._end_offsets: dict[int, int] | None = None
        self._consumer = None
        self.known_ids: frozenset[str] = frozenset()

    def refresh(self) -> bool:
        """Cache the topic's current content if the topic grew since the last refresh."""
        end_offsets = self._read_end_offsets()
        if end_offsets == self._end_offsets:
            return False
        self.frame.unpersist()
        # The cached plan fixes its Kafka offsets when it is built: at or after end_offsets.
        self.frame.persist(StorageLevel.MEMORY_AND_DISK)
        self.known_ids = frozenset(row.id for row in self.frame.select("id").collect())
        self._end_offsets = end_offsets
        log.info("content catalogue: %d content rows, up to offsets %s of %s", len(self.known_ids), end_offsets,
                 self.topic)
        return True

    def _read_end_offsets(self) -> dict[int, int]:
        from confluent_kafka import Consumer, TopicPartition

        if self._consumer is None:
            self._consumer = Consumer(client_config(self.kafka, {"group.id": "cdc-stream-catalogue",
                                                                 "enable.auto.commit": False, "log_level": 0}))
        partitions = self._consumer.list_topics(self.topic, timeout=30).topics[self.topic].partitions
        return {p: self._consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=30)[1]
                for p in partitions}
