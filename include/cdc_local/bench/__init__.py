"""Benchmark of the running pipeline (`make bench`, after `make demo`): throughput, freshness, footprint.

    make bench                                   # every phase, about 25 minutes
    make bench ARGS="--phases capture,backlog"   # only some phases
    make bench ARGS="--help"

The stack must be up with the Debezium connector running; the stream is started through
Airflow (cdc_stream) when no Spark driver runs. Every phase first waits until the stream is
idle. Figures are printed as they come and written, after each phase, to
bench/results/<UTC timestamp>.json together with the date, the git revision, the cores and
the memory of the machine. Benchmarks report; nothing fails on a timing.

Phases (--phases, comma-separated; all by default, run in this order):

trickle    First --idle-seconds (10) with no load: the idle baseline. Then the backlog's mix at a
           steady --trickle-rate (20 changes/s) for --trickle-seconds (60). Over each window, the
           cores used (CPU seconds / wall seconds, from /proc every --cpu-interval seconds) by the
           Spark side (the spark-submit JVM, its Python driver and every Python worker they fork:
           one process tree), by each stack service (supervisord's process trees, without the
           Spark tree an Airflow worker holds), by this bench, by the machine, and by processes
           outside these groups; and the Spark side's CPU milliseconds per change (Spark CPU
           seconds * 1000 / changes written), also above its idle cost. Runs first: the later
           phases report their Spark ms/change above that idle cost too.
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
           up. Per query the rate, and pipeline rate (slowest query) / capture rate. The Spark
           side's CPU per change from the first captured change until the last query caught up.
steps      Sustained load from an open-loop generator (rows scheduled at fixed times, never
           waiting on the pipeline) at each rate of --steps, then higher by --step-growth while
           every step holds: --warmup seconds, then --step-seconds measured. Per step the
           achieved source rate (and whether the generator kept its schedule), the capture
           rate and each query's lag sampled every --lag-interval seconds. A query holds a step
           when its lag is flat: the mean of the last third of the samples is at most the first
           third's plus one second of the step's changes. Reports the highest step every query
           held; stops at the first step not held (--keep-going runs the rest of the list). The
           Spark side's CPU per change committed in the measured window (given only for a step
           that held: otherwise Spark did not apply them all).
freshness  Inserts at a steady --freshness-rate for --freshness-seconds. For every row, the
           wall clock right after its COMMIT returned to the time each sink applied it:
           Cassandra engagement_events.ingested_at, the Redis row fence engagement_row:<id>
           field `at` (epoch ms), and the REST service's received_at (GET /v1/events?row_min=
           &row_max=). p50, p95, p99 and max over all events, plus p99 per 10 s of commit time.
           The Spark side's CPU per change from the first insert until every query caught up.
ceiling    The limits beside the pipeline, for --changes changes. (a) Debezium's capture alone:
           the stream is stopped first as a user does (pause cdc_stream, mark its task failed,
           wait for the driver to exit) and restarted when the phase ends, which then waits for it
           to apply what was captured; --ceiling-stream running measures with the stream running
           and says so; a stream not running when the phase begins is left alone. (b) Each sink
           of --ceiling-sinks (cassandra,redis,rest by default) alone: as many synthetic
           normalized changes (the backlog's mix and contents; ids just below 2,000,000,000;
           positions from the wall clock in epoch microseconds, above every real one and every
           earlier run's) through cdc_stream.<sink>_sink.write_changes in this process, in calls
           of --ceiling-batch, after an untimed warm-up of 20 changes; wall clock, this process's
           CPU (time.process_time) and each service's CPU. Their event times end at Redis'
           event-time clock, so engagement_10m's window does not move. Afterwards deletes with
           higher positions undo the Cassandra rows (checked: none left) and the Redis
           contributions (checked: every aggregate as before, within 1e-6; the watermark's
           max_position is set back, the deleted rows' fences expire as the stream's do). The
           REST service has no delete: the ceiling leaves its events there (leave rest out of
           --ceiling-sinks to avoid that). The stream stays stopped while the sinks are measured.

footprint  CPU (cores and share of the machine) and memory (PSS mean and max, RSS max) per
           service (supervisord's process trees), the Spark driver and the bench itself,
           sampled with psutil while the backlog drains and during each step; the stack's
           resident total. Alone, it runs its own load (--footprint-rate, --footprint-seconds).

The targets of issue 18 are evaluated at the end and listed in the JSON ("targets"). The
headline, printed last and in the JSON ("headline"): the backlog's pipeline rate over Debezium's
capture alone and over each sink's writer ceiling (and each sink query's backlog rate over it).
"""
