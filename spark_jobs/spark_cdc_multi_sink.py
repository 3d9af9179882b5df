"""CDC stream entry point: Debezium topics -> clean/enrich -> Cassandra, Redis, REST.

A content and a core query parse, validate and enrich each Debezium record once into normalized
topics; one query per sink ("cassandra", "redis", "rest") applies them. Each query keeps its own
checkpoint under ``--checkpoint-root/<query>``; bad records go to the quarantine topic with a reason.
Every setting defaults to the environment of ``.stack/env``; ``--help`` lists them.

Run with spark-submit, shipping the packages to executors::

    . .stack/env
    PY_FILES=$(PYTHONPATH=include:spark_jobs .stack/venv/bin/python -m cdc_platform.packaging .stack/build)
    .stack/venv/bin/spark-submit --master 'local[8]' \\
        --jars "$SPARK_KAFKA_JARS" --py-files "$PY_FILES" \\
        --conf spark.pyspark.python=.stack/venv/bin/python \\
        spark_jobs/spark_cdc_multi_sink.py --sinks cassandra,redis,rest

``spark.pyspark.python`` must name an interpreter with the sinks' client libraries (cassandra-driver,
redis, requests, confluent-kafka) on every node. On a local master, running it directly also works
(local[*], this interpreter and $SPARK_KAFKA_JARS by default)::

    PYTHONPATH=include:spark_jobs .stack/venv/bin/python spark_jobs/spark_cdc_multi_sink.py --sinks cassandra

SIGTERM/SIGINT stop the queries between micro-batches. A query that fails is restarted alone,
with a backoff, while the others go on.
"""
import logging
import os

from cdc_stream.job import main

if __name__ == "__main__":
    code = main()
    # No interpreter shutdown: it joins every non-daemon thread (client libraries' pools, py4j's),
    # and one that waits on a JVM already gone never returns (seen in CI: the driver orphaned,
    # sleeping). Nothing is owed at this point: each micro-batch commits only after its sinks.
    logging.shutdown()
    os._exit(code)
