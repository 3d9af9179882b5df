import random
from datetime import datetime
from statistics import mean

from cdc_local import traffic
from cdc_platform import semantics

NOW = datetime(2026, 11, 1, 12, 0, 0)


def _events(seed: int, n: int, bad_share: float = 0.0):
    rng = random.Random(seed)
    catalogue = traffic.make_catalogue(rng, 10, NOW)
    users = [str(i) for i in range(20)]
    return catalogue, [traffic.make_event(rng, catalogue, users, NOW, bad_share) for _ in range(n)]


def test_same_seed_same_traffic():
    assert _events(3, 200) == _events(3, 200)
    assert _events(3, 200) != _events(4, 200)


def _pcts_by_device(n: int = 4000):
    catalogue, events = _events(11, n)
    lengths = {c["id"]: c["length_seconds"] for c in catalogue}
    by_device: dict[str, list[float]] = {}
    for event, _ in events:
        pct = semantics.engagement_pct(event["duration_ms"], lengths[event["content_id"]])
        if pct is not None:
            by_device.setdefault(semantics.normalize_device(event["device"]), []).append(pct)
    return by_device


def _extreme_share(values):
    return sum(v <= semantics.VERY_LOW_PCT or v >= semantics.VERY_HIGH_PCT for v in values) / len(values)


def test_device_behaviour_matches_the_seed_insights():
    by_device = _pcts_by_device()
    assert _extreme_share(by_device["mobile"]) > 0.9
    assert _extreme_share(by_device["desktop"]) < 0.05
    assert 0.4 < mean(by_device["desktop"]) < 0.6
    assert mean(by_device["tablet"]) > 0.8
    assert mean(by_device["tablet"]) > mean(by_device["desktop"])


def test_bad_records_are_the_documented_kinds_at_about_the_requested_share():
    _, events = _events(5, 4000, bad_share=0.05)
    bad = [(e, kind) for e, kind in events if kind]
    assert 0.03 < len(bad) / len(events) < 0.07
    for event, kind in bad:
        if kind == "negative_duration":
            assert event["duration_ms"] < 0
        elif kind == "future_event_ts":
            assert semantics.is_too_far_in_future(event["event_ts"], NOW.replace(tzinfo=None).astimezone())
        else:
            assert kind == "missing_content" and event["content_id"] is None
