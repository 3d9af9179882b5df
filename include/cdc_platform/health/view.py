"""What the "CDC pipeline" page shows, from the health history: pure functions, no I/O.

A stage is ``down`` when a fact in the newest sample says it does not work (connector not
RUNNING, slot without a consumer, a query failing or never started), ``warn`` when one of the
watchdog's breaches falls on it, ``ok`` otherwise, and ``unknown`` when the newest sample is
older than two watchdog cycles (the watchdog itself is not running, or cannot reach a service).
"""
from __future__ import annotations

from cdc_platform import names

# Two five-minute watchdog cycles and the time one run may take.
STALE_AFTER_S = 2 * 300 + 180

SINK_STAGES = tuple(names.STREAM_SINKS)
STAGES = ("postgres", "debezium", "kafka", "spark", *SINK_STAGES)
STAGE_TITLES = {"postgres": "PostgreSQL", "debezium": "Debezium", "kafka": "Kafka", "spark": "Spark",
                "cassandra": "Cassandra", "redis": "Redis", "rest": "REST API"}
STATE_ORDER = ("ok", "unknown", "warn", "down")


def _breach_stage(check: str) -> str:
    """The stage a watchdog breach falls on (its check names are watchdog.evaluate's)."""
    if check == "connector":
        return "debezium"
    if check.startswith("slot_") or check == "schema_drift":
        return "postgres"
    if check in ("dlq_depth", "parked_depth"):
        return "rest"
    if check == "redis_state_lost":
        return "redis"
    if check.startswith(("sink_lag.", "stream_idle.")):
        query = check.split(".", 1)[1]
        for sink in SINK_STAGES:
            if query == names.sink_query(sink):
                return sink
    return "spark"


def _worse(a: str, b: str) -> str:
    return max(a, b, key=STATE_ORDER.index)


def stages(sample: dict | None, now: float, stream_task: dict | None = None) -> list[dict]:
    """Each stage of the path with its state and the facts behind it, newest sample first-hand."""
    if sample is None:
        return [{"id": s, "title": STAGE_TITLES[s], "state": "unknown", "facts": {},
                 "notes": ["no watchdog sample yet"]} for s in STAGES]
    m = sample["metrics"]
    state = {s: "ok" for s in STAGES}
    notes: dict[str, list[str]] = {s: [] for s in STAGES}

    def mark(stage: str, level: str, note: str) -> None:
        state[stage] = _worse(state[stage], level)
        notes[stage].append(note)

    for breach in sample.get("breaches") or []:
        mark(_breach_stage(breach["check"]), "warn", breach["message"])

    connector, tasks = m.get("connector_state"), m.get("connector_tasks") or []
    if connector != "RUNNING" or not tasks or any(t != "RUNNING" for t in tasks):
        restarted = m.get("connector_restarted") or []
        note = f"connector {connector}, tasks {tasks}" + (
            f" ({'; '.join(restarted)} by the watchdog)" if restarted else "")
        if any(b["check"] == "connector" for b in sample.get("breaches") or []):
            # The breach said it already; keep one line, in the watchdog's words.
            state["debezium"] = "down"
        else:
            mark("debezium", "down", note)
    if m.get("slot_active") is False:
        mark("postgres", "down", f"slot {names.REPLICATION_SLOT} has no consumer")
    for query, failure in (m.get("failing_queries") or {}).items():
        mark(_query_stage(query), "down", f"query {query} failed {failure.get('failures')}x: {failure.get('error')}")
    lags = m.get("sink_lag_messages") or {}
    for query in names.STREAM_QUERIES:
        if query in lags and lags[query] is None:
            mark(_query_stage(query), "down", f"query {query} has no checkpoint")
    if stream_task is not None and stream_task.get("state") != "running":
        mark("spark", "down", f"stream task is {stream_task.get('state') or 'not started'}")

    age = now - sample["at"]
    if age > STALE_AFTER_S:
        for s in STAGES:
            state[s] = "unknown"
            notes[s].insert(0, f"newest watchdog sample is {age / 60:.0f} min old")

    facts = _facts(m, stream_task)
    return [{"id": s, "title": STAGE_TITLES[s], "state": state[s], "facts": facts[s], "notes": notes[s]}
            for s in STAGES]


def _query_stage(query: str) -> str:
    for sink in SINK_STAGES:
        if query == names.sink_query(sink):
            return sink
    return "spark"


def _facts(m: dict, stream_task: dict | None) -> dict[str, dict]:
    lags, lag_s = m.get("sink_lag_messages") or {}, m.get("sink_lag_seconds") or {}
    facts: dict[str, dict] = {
        "postgres": {"slot active": m.get("slot_active"), "slot lag (bytes)": m.get("slot_lag_bytes")},
        "debezium": {"connector": m.get("connector_state"), "tasks": ", ".join(m.get("connector_tasks") or [])},
        "kafka": {"changes not yet read by the stream": lags.get(names.STREAM_CORE_QUERY),
                  "oldest unread (s)": lag_s.get(names.STREAM_CORE_QUERY)},
        "spark": {"stream task": (stream_task or {}).get("state"),
                  "waiting for content": m.get("waiting_for_content"),
                  "freshness (s)": m.get("freshness_seconds"),
                  "quarantined since start": sum((m.get("quarantined_total") or {}).values())},
    }
    for sink in SINK_STAGES:
        query = names.sink_query(sink)
        facts[sink] = {"lag (changes)": lags.get(query), "lag (s)": lag_s.get(query)}
    facts["rest"].update({"DLQ depth": m.get("dlq_depth"), "parked": m.get("parked_depth")})
    return facts


def series(samples: list[dict]) -> dict:
    """Chart data over the samples (oldest first): per-sink rates from consecutive samples'
    committed counts, freshness, DLQ and parked depth, records quarantined per interval by reason."""
    times = [s["at"] for s in samples]
    rate: dict[str, list[float | None]] = {sink: [] for sink in SINK_STAGES}
    rate_times: list[float] = []
    for before, after in zip(samples, samples[1:]):
        dt = after["at"] - before["at"]
        if dt <= 0:
            continue
        rate_times.append(after["at"])
        for sink in SINK_STAGES:
            query = names.sink_query(sink)
            a = (before["metrics"].get("committed_messages") or {}).get(query)
            b = (after["metrics"].get("committed_messages") or {}).get(query)
            # A reset checkpoint starts counting again: no rate across it.
            rate[sink].append(round((b - a) / dt, 1) if a is not None and b is not None and b >= a else None)
    # Per watchdog interval (read from the quarantine topic): a total since the stream started
    # would fall to zero at each restart of the stream.
    reasons = sorted({r for s in samples for r in (s["metrics"].get("quarantined_new") or {})})
    return {
        "rate": {"t": rate_times, "series": rate, "unit": "changes/s"},
        "freshness": {"t": times, "series": {"oldest unapplied change": [
            s["metrics"].get("freshness_seconds") for s in samples]}, "unit": "s"},
        "dlq": {"t": times, "series": {"DLQ": [s["metrics"].get("dlq_depth") for s in samples],
                                       "parked": [s["metrics"].get("parked_depth") for s in samples]},
                "unit": "entries"},
        "quarantine": {"t": times, "series": {r: [(s["metrics"].get("quarantined_new") or {}).get(r, 0)
                                                  for s in samples] for r in reasons},
                       "unit": "records per watchdog interval"},
    }


def run_link(dag_id: str | None, run_id: str | None) -> str | None:
    """The Airflow UI's page of a DAG run (relative to the UI's root)."""
    if not dag_id or not run_id:
        return None
    from urllib.parse import quote

    return f"/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def summary(samples: list[dict], events: dict[str, list[dict]], now: float, stream_task: dict | None) -> dict:
    newest = samples[-1] if samples else None

    def linked(event: dict) -> dict:
        return dict(event, link=run_link(event.get("dag_id"), event.get("run_id")))

    return {
        "generated_at": now,
        "sample": None if newest is None else {"at": newest["at"], "age_s": round(now - newest["at"], 1),
                                               "link": run_link(newest.get("dag_id"), newest.get("run_id"))},
        "samples": len(samples),
        "stream_task": stream_task,
        "stages": stages(newest, now, stream_task),
        "charts": series(samples),
        "reconcile": [linked(e) for e in events.get("reconcile", [])[:1]],
        "dlq_round": [linked(e) for e in events.get("dlq_round", [])[:1]],
        "alerts": [linked(e) for e in events.get("alert", [])],
    }
