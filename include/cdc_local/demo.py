"""The main job (`make demo`): the whole platform end to end, through Airflow.

After `make up`: smoke-checks every service, provisions through the `cdc_provision` DAG,
starts the `cdc_stream` DAG, feeds sample traffic (with a short REST outage so the DLQ has
something to show), redelivers the DLQ through `cdc_dlq_reprocess`, then prints what the
seed's verification section shows plus a health summary from `cdc_watchdog`. The stream
keeps running afterwards: rows changed in PostgreSQL keep flowing until `make down`.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from cdc_local import pipeline_driver, sink_verification, traffic
from cdc_platform import names, stream_progress
from cdc_platform.smoke_checks import run_checks
from cdc_local.stack import envfile
from cdc_local.stack.config import StackConfig


def say(text: str = "") -> None:
    print(text, flush=True)


def print_cassandra_rows(env, limit: int = 10) -> None:
    from cdc_platform.cassandra_cluster import cassandra_cluster_from_env

    cluster = cassandra_cluster_from_env(env)
    try:
        rows = cluster.connect().execute(
            f"SELECT id, content_id, user_id, event_type, event_ts, duration_ms, device, raw_payload, engagement_pct "
            f"FROM {names.CASSANDRA_KEYSPACE}.{names.CASSANDRA_EVENTS_TABLE} LIMIT {limit}")
        say(f"cqlsh> SELECT * FROM {names.CASSANDRA_KEYSPACE}.{names.CASSANDRA_EVENTS_TABLE} LIMIT {limit};")
        say(f" {'id':>6} | {'content_id':<36} | {'event_type':<8} | {'event_ts':<19} | {'duration_ms':>11} | "
            f"{'device':<7} | engagement_pct")
        for r in rows:
            pct = "null" if r.engagement_pct is None else f"{r.engagement_pct:.4f}"
            say(f" {r.id:>6} | {str(r.content_id):<36} | {r.event_type:<8} | {r.event_ts:%Y-%m-%d %H:%M:%S} | "
                f"{str(r.duration_ms):>11} | {r.device:<7} | {pct}")
    finally:
        cluster.shutdown()


def print_redis(env) -> None:
    from cdc_platform import redis_client

    client = redis_client.connect(env["REDIS_URL"], decode_responses=True)
    for key in (names.REDIS_COUNTS, names.REDIS_10M, names.REDIS_AVG_PCT):
        say(f"redis-cli ZRANGE {key} 0 -1 WITHSCORES")
        members = sink_verification.redis_sorted_set(client, key)
        if not members:
            say("   (empty)")
        for i, (member, score) in enumerate(members, 1):
            say(f"  {i:>3}) {member}  {score:.6g}")
    say("device insights (engagement_device:<device>):")
    for device, fields in sink_verification.device_insights(client).items():
        say(f"   {device:<8} count={fields.get('count', '0'):>5}  mean_pct={float(fields.get('mean_pct', 0)):.3f}  "
            f"very_low_share={float(fields.get('very_low_share', 0)):.2f}  "
            f"very_high_share={float(fields.get('very_high_share', 0)):.2f}")


def print_dlq(env, limit: int = 8) -> None:
    from cdc_platform.delivery import dlq

    log_path = pipeline_driver.dlq_audit_log(env)
    say(f"$ tail -n {limit} {log_path}")
    lines = log_path.read_text().splitlines() if log_path.exists() else []
    for line in lines[-limit:]:
        say(f"   {line[:220]}")
    say(f"   ({len(lines)} DLQ entries logged in total; DLQ waiting now: "
        f"{dlq.dlq_depth(env['KAFKA_BOOTSTRAP'])}, parked: {dlq.dlq_depth(env['KAFKA_BOOTSTRAP'], names.PARKED_TOPIC)})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=3000, help="sample changes to write")
    parser.add_argument("--rate", type=float, default=300, help="changes per second")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--outage-share", type=float, default=0.15,
                        help="share of the traffic sent while the REST API answers 503")
    args = parser.parse_args(argv)

    cfg = StackConfig.load()
    env = envfile.read_or_exit(cfg)
    os.environ.update(env)
    started = time.monotonic()

    say("==> 1/7 smoke check: one real round trip per service")
    results = run_checks(env)
    for r in results:
        say(f"    {'ok ' if r.ok else 'FAIL'} {r.service:<14} {r.detail}")
    if not all(r.ok for r in results):
        return 1

    client = pipeline_driver.airflow_client(env)
    say("==> 2/7 provisioning through Airflow (DAG cdc_provision)")
    client.wait_for_dags(pipeline_driver.PIPELINE_DAGS)
    run = pipeline_driver.run_dag(client, "cdc_provision", timeout=600, log=say)
    for ti in run["task_instances"]:
        say(f"    {ti['task_id']:<18} {ti['state']:<8} {ti.get('duration') or 0:6.1f}s")
    if run["state"] != "success":
        say("    cdc_provision failed: see its task logs in the Airflow UI")
        return 1

    say("==> 3/7 starting the stream (DAG cdc_stream, SparkSubmitOperator)")
    pids = pipeline_driver.start_stream(client, env, log=say)
    say(f"    stream running (driver pids {pids}), committed batches so far: {stream_progress.stream_batches(env)}")
    # A health sample before the traffic: with the one after it, the pipeline page draws rates.
    pipeline_driver.run_dag(client, "cdc_watchdog", log=lambda line: None)

    api = pipeline_driver.RestApi(env)
    outage = int(args.events * args.outage_share)
    say(f"==> 4/7 sample traffic: {args.events} changes at {args.rate:.0f}/s "
        f"(the REST API answers 503 during the first {outage})")
    api.set_faults(status=503)
    try:
        stats = traffic.run(env["PG_DSN"], outage, args.rate, seed=args.seed, progress_every=0)
        stream_progress.wait_caught_up(env, timeout=300)
    finally:
        api.clear_faults()
    more = traffic.run(env["PG_DSN"], args.events - outage, args.rate, seed=args.seed + 1, catalogue_seed=args.seed)
    say(f"    written: {stats.inserts + more.inserts} inserts, {stats.updates + more.updates} updates, "
        f"{stats.deletes + more.deletes} deletes; deliberately bad: "
        f"{ {k: stats.bad[k] + more.bad[k] for k in stats.bad} }")
    waited = stream_progress.wait_caught_up(env, timeout=300)
    say(f"    stream caught up {waited:.1f}s after the last change")

    say("==> 5/7 redelivering the DLQ (DAG cdc_dlq_reprocess)")
    from cdc_platform.delivery import dlq

    waiting = dlq.dlq_depth(env["KAFKA_BOOTSTRAP"])
    run = pipeline_driver.run_dag(client, "cdc_dlq_reprocess", conf={"base_backoff_seconds": 0}, log=say)
    # Unpausing also lets the scheduler start its own run; either may take the entries.
    deadline = time.monotonic() + 120
    while dlq.dlq_depth(env["KAFKA_BOOTSTRAP"]) > 0 and time.monotonic() < deadline:
        time.sleep(2)
    say(f"    {run['state']}: {waiting} DLQ entries waiting before, "
        f"{dlq.dlq_depth(env['KAFKA_BOOTSTRAP'])} after; the REST API now holds {api.count()} events")

    say("==> 6/7 checking the sinks against PostgreSQL")
    import psycopg2

    from cdc_platform.cassandra_cluster import cassandra_cluster_from_env

    pg = psycopg2.connect(env["PG_DSN"])
    cluster = cassandra_cluster_from_env(env)
    comparison = sink_verification.wait_for_cassandra_to_match(pg, cluster.connect(), timeout=120)
    cluster.shutdown()
    pg.close()
    say(f"    Cassandra vs PostgreSQL: {comparison.summary()}")
    run = pipeline_driver.run_dag(client, "cdc_reconcile", log=say)
    rec = client.xcom("cdc_reconcile", run["dag_run_id"], "reconcile_redis") if run["state"] == "success" else {}
    say(f"    Redis vs recompute from Cassandra (cdc_reconcile): drift {rec.get('drift_total')}, "
        f"rows in flight {rec.get('rows_in_flight')}")
    quarantined = sink_verification.quarantine_reasons(env["KAFKA_BOOTSTRAP"])
    say(f"    quarantined records by reason: {quarantined}")

    say("==> 7/7 the seed's verification")
    say()
    print_cassandra_rows(env)
    say()
    print_redis(env)
    say()
    print_dlq(env)
    say()
    run = pipeline_driver.run_dag(client, "cdc_watchdog", log=say)
    try:
        watch = client.xcom("cdc_watchdog", run["dag_run_id"], "check_pipeline")
        m = watch["metrics"]
        say(f"health (cdc_watchdog, {run['state']}): connector {m['connector_state']} {m['connector_tasks']}, "
            f"slot lag {m['slot_lag_bytes']} B, sink lag {m['sink_lag_messages']}, DLQ {m['dlq_depth']}, "
            f"parked {m['parked_depth']}, freshness {m['freshness_seconds']}s")
    except Exception:  # noqa: BLE001 - a breach fails the run (no XCom); its alert says why
        say(f"health (cdc_watchdog): {run['state']}; see the alert at {env['ALERTS_URL']}")
    say()
    say(f"Done in {time.monotonic() - started:.0f}s. The stream keeps running: rows you change in PostgreSQL")
    say(f"(psql \"$PG_DSN\", after `. {cfg.env_file}`) reach Cassandra, Redis and the REST API until `make down`.")
    say(f"Airflow UI: {env['AIRFLOW_URL']}  login: {env['AIRFLOW_USER']} / {env['AIRFLOW_PASSWORD']}")
    say(f"CDC pipeline page (in the UI's navigation): {pipeline_driver.pipeline_page_url(env)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
