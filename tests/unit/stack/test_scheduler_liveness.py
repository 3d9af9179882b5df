from datetime import datetime, timedelta, timezone

import pytest

from cdc_local.stack import scheduler_liveness as liveness

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


@pytest.mark.parametrize("heartbeat, since, restart", [
    (ago(5), ago(3600), False),        # beating
    (ago(121), ago(3600), True),       # stale: the hang after a database restart
    (None, ago(3600), True),           # running for an hour and never beat
    (None, ago(60), False),            # still starting
    (ago(3000), ago(100), False),      # the old process's beat, within the new one's grace
    (ago(3000), ago(200), True),       # ... and past it: silent since it started
    (ago(1), None, False),             # not running: supervisord's business
])
def test_only_a_scheduler_running_past_its_grace_and_silent_too_long_is_restarted(heartbeat, since, restart):
    verdict = liveness.judge(NOW, heartbeat, since, stale_after_s=120, grace_s=180)
    assert verdict.restart is restart, verdict.reason


class FakeSupervisor:
    def __init__(self, info):
        self._info = info
        self.calls = []

    def info(self, name):
        self.calls.append(("info", name))
        return self._info

    def stop_process(self, name):
        self.calls.append(("stop", name))

    def start_process(self, name):
        self.calls.append(("start", name))


def test_a_stale_scheduler_is_stopped_then_started_and_alerted(monkeypatch):
    started = datetime.now(timezone.utc) - timedelta(hours=1)
    supervisor = FakeSupervisor({"statename": "RUNNING", "start": started.timestamp()})
    monkeypatch.setattr(liveness, "scheduler_heartbeat", lambda url: started + timedelta(minutes=10))
    posted = []
    monkeypatch.setattr("cdc_platform.alerting.post_alert", lambda url, alert: posted.append((url, alert)))

    verdict = liveness.probe_once(supervisor, "http://h/health", "http://h/alerts", 120, 180)

    assert verdict.restart
    assert supervisor.calls[1:] == [("stop", liveness.PROGRAM), ("start", liveness.PROGRAM)]
    assert posted[0][0] == "http://h/alerts" and posted[0][1]["source"] == "scheduler_liveness"


def test_nothing_is_restarted_when_the_api_server_cannot_tell(monkeypatch):
    supervisor = FakeSupervisor({"statename": "RUNNING", "start": 0})

    def down(url):
        raise ConnectionError("refused")
    monkeypatch.setattr(liveness, "scheduler_heartbeat", down)

    verdict = liveness.probe_once(supervisor, "http://h/health", None, 120, 180)

    assert not verdict.restart and "refused" in verdict.reason
    assert [c[0] for c in supervisor.calls] == ["info"]


def test_the_probe_is_supervised_beside_the_scheduler_with_the_stack_health_url(tmp_path):
    from cdc_local.stack import secrets
    from cdc_local.stack.config import StackConfig
    from cdc_local.stack.services import airflow

    cfg = StackConfig.load({"CDC_STATE_DIR": str(tmp_path)})
    programs = {s.name: s for s in airflow.services(cfg, secrets.load_or_create(cfg.secrets))}
    probe = programs["airflow-scheduler-liveness"]
    assert probe.command[1:3] == ["-m", "cdc_local.stack.scheduler_liveness"]
    assert f"http://{cfg.host}:{cfg.ports['airflow']}/api/v2/monitor/health" in probe.command
