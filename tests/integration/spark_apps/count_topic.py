"""spark-submit app for the stack test: count the messages of a Kafka topic with the kafka source."""
import sys

from pyspark.sql import SparkSession

bootstrap, topic = sys.argv[1], sys.argv[2]
spark = SparkSession.builder.appName("count-topic").getOrCreate()
count = (
    spark.read.format("kafka")
    .option("kafka.bootstrap.servers", bootstrap)
    .option("subscribe", topic)
    .option("startingOffsets", "earliest")
    .option("endingOffsets", "latest")
    .load()
    .count()
)
print(f"COUNT={count}")
spark.stop()
