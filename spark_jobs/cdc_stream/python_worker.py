"""What the stream does once in each Python worker process Spark starts for it."""
from __future__ import annotations

import gc

_frozen = False


def freeze_heap_once() -> None:
    """Exclude what the worker holds after its first task from garbage collection.

    PySpark's daemon runs ``gc.collect()`` after every task of a reused worker. A worker of this
    job holds pyarrow, the Cassandra driver, the Kafka and Redis clients and their caches: a full
    collection walks all of it, about 40 ms of CPU per task, more than the task's own work at a
    trickle. Frozen objects are skipped; what later tasks allocate is collected as usual."""
    global _frozen
    if not _frozen:
        gc.freeze()
        _frozen = True
