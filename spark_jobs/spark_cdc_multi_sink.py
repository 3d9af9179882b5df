"""CDC stream entry point: Debezium topics -> clean/enrich -> Cassandra, Redis, REST.

The core query parses, validates and enriches each Debezium record once and, in the same
micro-batch, writes it to the change log and to every sink ("cassandra", "redis", "rest"). A sink
that fails there is caught up from the change log by a query of its own, then rejoins. Each query
keeps its own checkpoint under ``--checkpoint-root/<query>``; bad records go to the quarantine
topic with a reason.
Every setting defaults to the environment of ``.stack/env``; ``--help`` lists them.

Run with spark-submit, shipping the packages to executors::

    . .stack/env
    PY_FILES=$(PYTHONPATH=include:spark_jobs .stack/venv/bin/python -m cdc_platform.packaging .stack/build)
    .stack/venv/bin/spark-submit --master 'local[2]' \\
        --jars "$SPARK_KAFKA_JARS" --py-files "$PY_FILES" \\
        --conf spark.pyspark.python=.stack/venv/bin/python \\
        spark_jobs/spark_cdc_multi_sink.py --sinks cassandra,redis,rest

``spark.pyspark.python`` must name an interpreter with the sinks' client libraries (cassandra-driver,
redis, requests, confluent-kafka) on every node. On a local master, running it directly also works
(local[*], this interpreter and $SPARK_KAFKA_JARS by default)::

    PYTHONPATH=include:spark_jobs .stack/venv/bin/python spark_jobs/spark_cdc_multi_sink.py --sinks cassandra

SIGTERM/SIGINT stop the queries between micro-batches. A query that fails is restarted alone,
with a backoff.
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
