"""Benchmark of the running pipeline (`make bench`, after `make demo`): throughput, freshness, footprint.

    make bench                                   # every phase, about 20 minutes
    make bench ARGS="--phases capture,backlog"   # only some phases
    make bench ARGS="--help"

The stack must be up with the Debezium connector running; the stream is started through
Airflow (cdc_stream) when no Spark driver runs. Every phase first waits until the stream is
idle. Figures are printed as they come and written, after each phase, to
bench/results/<UTC timestamp>.json together with the date, the git revision, the cores and
the memory of the machine. Benchmarks report; nothing fails on a timing.

Phases (--phases, comma-separated; all by default, run in this order):

capture    Debezium's own rate into Kafka: the source topics' end offsets are sampled every
           --sample-interval seconds while the backlog load is written and captured; changes/s
           from the last sample before the first movement to the first sample at the final
           offsets. Shares its load with `backlog` when both run.
backlog    --changes changes (default 100,000; traffic.py's rows: about 86 % inserts, 10 %
           updates, 4 % deletes, 2 % deliberately bad), written in transactions of --tx-size as
           fast as PostgreSQL takes them. Then the time until every stream query has caught up:
           queries are checked in pipeline order (watchdog.STREAM_QUERIES, the core query
           first); a query has caught up when its last committed batch (Spark checkpoint)
           reaches the end offsets of its own topics, read once the queries before it caught
           up. Per query the rate, and the headline: pipeline rate (slowest query) / capture rate.
steps      Sustained load from an open-loop generator (rows scheduled at fixed times, never
           waiting on the pipeline) at each rate of --steps, then higher by --step-growth while
           every step holds: --warmup seconds, then --step-seconds measured. Per step the
           achieved source rate (and whether the generator kept its schedule), the capture
           rate and each query's lag sampled every --lag-interval seconds. A query holds a step
           when its lag is flat: the mean of the last third of the samples is at most the first
           third's plus one second of the step's changes. Reports the highest step every query
           held; stops at the first step not held (--keep-going runs the rest of the list).
freshness  Inserts at a steady --freshness-rate for --freshness-seconds. For every row, the
           wall clock right after its COMMIT returned to the time each sink applied it:
           Cassandra engagement_events.ingested_at, the Redis row fence engagement_row:<id>
           field `at` (epoch ms), and the REST service's received_at (GET /v1/events?row_min=
           &row_max=). p50, p95, p99 and max over all events, plus p99 per 10 s of commit time.
footprint  CPU (cores and share of the machine) and memory (PSS mean and max, RSS max) per
           service (supervisord's process trees), the Spark driver and the bench itself,
           sampled with psutil while the backlog drains and during each step; the stack's
           resident total. Alone, it runs its own load (--footprint-rate, --footprint-seconds).

The issue's targets (issue 7) are evaluated at the end and listed in the JSON ("targets").
"""
