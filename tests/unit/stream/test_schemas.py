"""The source record is the waiting room's stored shape: its columns may change only on purpose."""
from __future__ import annotations

from pyspark.sql import types as T

from cdc_stream import schemas


def test_a_source_record_is_the_kafka_record_with_text_key_and_value_and_the_waiting_rooms_columns():
    assert [(f.name, f.dataType, f.nullable) for f in schemas.SOURCE_RECORD.fields] == [
        ("key", T.StringType(), True), ("value", T.StringType(), True), ("topic", T.StringType(), True),
        ("partition", T.IntegerType(), True), ("offset", T.LongType(), True),
        ("timestamp", T.TimestampType(), True), ("pending_since_ms", T.LongType(), True),
        ("expired", T.BooleanType(), True),
    ]
