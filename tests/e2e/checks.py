"""Workloads and end-state checks shared by the end-to-end tests: what they write to the
source, and how they prove that every sink holds exactly what PostgreSQL holds."""
from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta, timezone

import redis

from cdc_local import pipeline_driver, sink_verification
from cdc_platform import names, stream_progress


def xcom(airflow, run, task_id):
    return airflow.xcom(run["dag_id"], run["dag_run_id"], task_id)


def content_ids(pg) -> list[str]:
    from cdc_local import traffic

    traffic.ensure_catalogue(pg, traffic.make_catalogue(random.Random(1), 12, datetime(2026, 1, 1)))
    with pg.cursor() as cur:
        cur.execute(f"SELECT id::text, length_seconds FROM {names.PG_CONTENT_TABLE} WHERE length_seconds > 0")
        rows = cur.fetchall()
    pg.commit()
    return [r[0] for r in rows]


def write_workload(pg, n_rows: int, seed: int) -> dict[int, int]:
    """Insert n rows, update about a third (some twice), delete about a tenth.

    Returns, per row id, how many changes it went through (what the REST API must hold)."""
    rng = random.Random(seed)
    catalogue = content_ids(pg)
    changes: dict[int, int] = {}
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    with pg.cursor() as cur:
        for _ in range(n_rows):
            cur.execute(
                f"INSERT INTO {names.PG_EVENTS_TABLE} (content_id, user_id, event_type, event_ts, duration_ms, device, "
                "raw_payload) VALUES (%s, %s, 'play', %s, %s, %s, '{\"src\": \"e2e\"}') RETURNING id",
                (rng.choice(catalogue), str(uuid.uuid4()), now - timedelta(seconds=rng.randint(0, 300)),
                 rng.randint(0, 600_000), rng.choice(["mobile", "Desktop", "iPad", "tv"])))
            changes[cur.fetchone()[0]] = 1
        pg.commit()
        ids = sorted(changes)
        for rid in rng.sample(ids, len(ids) // 3) + rng.sample(ids, len(ids) // 10):
            cur.execute(f"UPDATE {names.PG_EVENTS_TABLE} SET duration_ms = %s, device = %s WHERE id = %s",
                        (rng.randint(0, 600_000), rng.choice(["mobile", "desktop", "tablet"]), rid))
            changes[rid] += 1
        pg.commit()
        for rid in rng.sample(ids, len(ids) // 10):
            cur.execute(f"DELETE FROM {names.PG_EVENTS_TABLE} WHERE id = %s", (rid,))
            changes[rid] += 1
        pg.commit()
    return changes


def assert_sinks_match_postgres(stack_env, airflow, pg, cassandra):
    stream_progress.wait_caught_up(stack_env, timeout=300)
    comparison = sink_verification.wait_for_cassandra_to_match(pg, cassandra, timeout=180)
    assert comparison.equal, comparison.summary()
    run = pipeline_driver.run_dag(airflow, "cdc_reconcile", conf={"repair": False})
    assert run["state"] == "success"
    report = xcom(airflow, run, "reconcile_redis")
    assert report["drift_total"] == 0, report["drift_before"]
    return comparison, report


def assert_rest_holds_each_change_once(api, changes: dict[int, int]):
    wrong = {}
    stored = api.events_for_rows(changes)
    for rid, expected in changes.items():
        keys = [e["idempotency_key"] for e in stored[rid]]
        if len(keys) != expected or len(set(keys)) != len(keys):
            wrong[rid] = (expected, len(keys))
    assert not wrong, f"{len(wrong)} rows with wrong REST event counts (expected, stored): {list(wrong.items())[:10]}"


def bring_back(service: str) -> None:
    """Start a stopped stack service and wait until it is ready again."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "cdc_local.stack", "up", service], capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def answers(session) -> bool:
    from cassandra.cluster import NoHostAvailable

    try:
        return session.execute("SELECT release_version FROM system.local").one() is not None
    except NoHostAvailable:
        return False


def redis_fences(stack_env, changes: dict[int, int]) -> dict[int, dict]:
    client = redis.Redis.from_url(stack_env["REDIS_URL"], decode_responses=True)
    pipe = client.pipeline(transaction=False)
    for rid in changes:
        pipe.hgetall(f"{names.REDIS_ROW_PREFIX}{rid}")
    return dict(zip(changes, pipe.execute()))


def insert_content_with_events(pg, contents: int, events: int, device: str) -> tuple[str, list[int]]:
    """In one transaction, new content rows and events for the last of them; (its id, event ids)."""
    from cdc_local import traffic

    catalogue = traffic.make_catalogue(random.Random(uuid.uuid4().int), contents, datetime(2026, 1, 1))
    catalogue[-1]["length_seconds"] = 600
    last = catalogue[-1]["id"]
    with pg.cursor() as cur:
        cur.executemany(
            f"INSERT INTO {names.PG_CONTENT_TABLE} (id, slug, title, content_type, length_seconds, publish_ts) "
            "VALUES (%(id)s, %(slug)s, %(title)s, %(content_type)s, %(length_seconds)s, %(publish_ts)s)", catalogue)
        cur.execute(
            f"INSERT INTO {names.PG_EVENTS_TABLE} (content_id, user_id, event_type, event_ts, duration_ms, device) "
            "SELECT %s, gen_random_uuid(), 'play', now() AT TIME ZONE 'utc', g %% 600000, %s "
            "FROM generate_series(1, %s) AS g RETURNING id", (last, device, events))
        ids = [row[0] for row in cur.fetchall()]
    pg.commit()
    return last, ids


LOOSE_WATCHDOG = {"max_parked": 10**9, "max_dlq_depth": 10**9, "max_new_quarantined": 10**9}


def watchdog_report(airflow, stack_env, conf: dict | None = None) -> dict:
    """Run cdc_watchdog once; its report (metrics, breaches). A run with breaches fails after
    posting them as an alert, so the report is then read from that alert."""
    from datetime import datetime, timezone

    since = datetime.now(timezone.utc).isoformat()
    run = pipeline_driver.run_dag(airflow, "cdc_watchdog", conf=LOOSE_WATCHDOG if conf is None else conf)
    if run["state"] == "success":
        return xcom(airflow, run, "check_pipeline")
    alerts = [a for a in pipeline_driver.alerts_since(stack_env, since, source="watchdog")
              if a["details"].get("metrics")]
    assert alerts, f"watchdog run {run['state']} without an alert"
    return alerts[-1]["details"]
