"""spark-submit app for the secured-Kafka test: with the Spark options the stream derives from a
Kafka connection (cdc_stream.kafka_options, shipped in --py-files), count a topic with the kafka
source and copy it to another topic with the kafka sink. The connection arrives as the stream's
does, in CDC_KAFKA_CLIENT_CONFIG."""
import os
import sys

from pyspark.sql import SparkSession

from cdc_platform.kafka_clients import CLIENT_CONFIG_ENV, decode_client_config
from cdc_stream.kafka_options import spark_kafka_options

source_topic, target_topic = sys.argv[1], sys.argv[2]
options = spark_kafka_options(decode_client_config(os.environ[CLIENT_CONFIG_ENV]))
spark = SparkSession.builder.appName("kafka-roundtrip").getOrCreate()
records = (
    spark.read.format("kafka").options(**options)
    .option("subscribe", source_topic)
    .option("startingOffsets", "earliest")
    .option("endingOffsets", "latest")
    .load()
    .select("key", "value")
    .cache()
)
print(f"COUNT={records.count()}")
records.write.format("kafka").options(**options).option("topic", target_topic).save()
spark.stop()
