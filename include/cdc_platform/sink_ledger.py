"""Which sinks the stream writes in its micro-batches, and where a sink that fell behind is.

The stream writes every change to each live sink in the micro-batch that read it (one hop).
A sink that fails or outlives its time budget in a batch is recorded here as behind, from the
change-log offsets of that batch's first records, before the batch commits; the other sinks go
on. The stream's catch-up query for that sink then replays the change log from there, with its
own checkpoint (``names.sink_query(sink)``), and the sink rejoins the batches:

    live --fails--> behind(from) --catch-up reaches the log's end--> handoff
    handoff --the next batch writes it--> joined(live_from) --catch-up passes live_from--> live
    handoff|joined --fails again--> behind (the catch-up query goes on from where it is)

A sink absent from the ledger is live. Overlaps (the catch-up and the batches both writing a
change) are harmless: every sink is idempotent by source position. The ledger is kept outside
Spark's checkpoints, one small JSON file per sink, replaced atomically and synced to disk.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cdc_platform import names

LIVE, BEHIND, HANDOFF, JOINED = "live", "behind", "handoff", "joined"
STATES = (LIVE, BEHIND, HANDOFF, JOINED)
LEDGER_DIR = "_ledger"

Offsets = dict[str, dict[int, int]]


@dataclass(frozen=True)
class SinkState:
    sink: str
    state: str = LIVE
    # Change-log offsets the catch-up starts from (behind), and from which the batches write the
    # sink again (joined): the catch-up stops once it has passed them.
    start: Offsets = field(default_factory=dict)
    live_from: Offsets = field(default_factory=dict)
    cause: str | None = None
    since: float | None = None
    updated_at: float | None = None

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"sink {self.sink}: unknown ledger state {self.state!r}")

    @property
    def written_by_batches(self) -> bool:
        """Whether the micro-batches write this sink (every state but behind)."""
        return self.state != BEHIND

    @property
    def catching_up(self) -> bool:
        """Whether the sink's catch-up query runs (every state but live)."""
        return self.state != LIVE

    @classmethod
    def from_json(cls, sink: str, raw: dict) -> "SinkState":
        def offsets(value) -> Offsets:
            return {topic: {int(p): int(o) for p, o in parts.items()} for topic, parts in (value or {}).items()}

        return cls(sink=sink, state=raw.get("state", LIVE), start=offsets(raw.get("start")),
                   live_from=offsets(raw.get("live_from")), cause=raw.get("cause"), since=raw.get("since"),
                   updated_at=raw.get("updated_at"))


def ledger_dir(checkpoint_root: str | Path) -> Path:
    return Path(str(checkpoint_root).removeprefix("file://")) / LEDGER_DIR


def is_local(checkpoint_root: str) -> bool:
    return "://" not in checkpoint_root or checkpoint_root.startswith("file://")


def read_state(checkpoint_root: str | Path, sink: str) -> SinkState:
    path = ledger_dir(checkpoint_root) / f"{sink}.json"
    try:
        return SinkState.from_json(sink, json.loads(path.read_text()))
    except FileNotFoundError:
        return SinkState(sink)


def write_state(checkpoint_root: str | Path, state: SinkState) -> SinkState:
    """Replace the sink's entry durably: written to a temporary file, synced, renamed, and the
    directory synced, so a crash leaves either the old entry or the new one."""
    state = SinkState(**{**asdict(state), "updated_at": time.time()})
    directory = ledger_dir(checkpoint_root)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{state.sink}.json.tmp"
    with open(tmp, "w") as handle:
        handle.write(json.dumps(asdict(state)))
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(directory / f"{state.sink}.json")
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return state


def read_all(checkpoint_root: str | Path, sinks: tuple[str, ...] = names.STREAM_SINKS) -> dict[str, SinkState]:
    return {sink: read_state(checkpoint_root, sink) for sink in sinks}


def passed(position: Offsets, target: Offsets) -> bool:
    """Whether ``position`` (a query's committed offsets) is at or past ``target`` everywhere."""
    return all(position.get(topic, {}).get(partition, -1) >= offset
               for topic, partitions in target.items() for partition, offset in partitions.items())


def query_checkpoint(checkpoint_root: str | Path, query: str) -> Path:
    """The checkpoint whose committed offsets say how far ``query`` has got: for a sink's query,
    the core query's while the core batches alone write the sink (live), else the sink's own
    catch-up query's."""
    root = Path(str(checkpoint_root).removeprefix("file://"))
    for sink in names.STREAM_SINKS:
        if query == names.sink_query(sink) and read_state(root, sink).state == LIVE:
            return root / names.STREAM_CORE_QUERY
    return root / query
