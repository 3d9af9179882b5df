"""Switchable failures of the batch endpoint, so tests can exercise retries and the DLQ."""
from __future__ import annotations

import random
import threading
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_FAULT_STATUS = 503


class FaultConfig(BaseModel):
    """``status`` alone: every batch post fails with it. ``error_rate`` alone: that share
    fails with 503. Both: that share fails with ``status``. ``latency_ms`` delays every
    batch post. ``seed`` makes the random choices repeatable. ``key_prefix`` limits the
    faults to batches holding a key with that prefix, so a test cannot disturb the live stream."""

    model_config = ConfigDict(extra="forbid")

    error_rate: float | None = Field(default=None, ge=0.0, le=1.0)
    status: int | None = Field(default=None, ge=400, le=599)
    latency_ms: int = Field(default=0, ge=0, le=120_000)
    seed: int | None = None
    key_prefix: str | None = Field(default=None, min_length=1)

    @property
    def failure_rate(self) -> float:
        if self.error_rate is not None:
            return self.error_rate
        return 1.0 if self.status is not None else 0.0

    @property
    def failure_status(self) -> int:
        return self.status if self.status is not None else DEFAULT_FAULT_STATUS


@dataclass(frozen=True)
class FaultDecision:
    delay_s: float
    status: int | None  # None: let the request through


NO_FAULT = FaultDecision(delay_s=0.0, status=None)


class FaultInjector:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._config = FaultConfig()
        self._rng = random.Random()
        self._injected = 0

    def set(self, config: FaultConfig) -> None:
        with self._lock:
            self._config = config
            self._rng = random.Random(config.seed)
            self._injected = 0

    def clear(self) -> None:
        self.set(FaultConfig())

    def snapshot(self) -> dict:
        with self._lock:
            return {**self._config.model_dump(), "injected_failures": self._injected}

    def decide(self, keys: list[str]) -> FaultDecision:
        with self._lock:
            config = self._config
            prefix = config.key_prefix
            if prefix is not None and not any(k.startswith(prefix) for k in keys):
                return NO_FAULT
            rate = config.failure_rate
            fail = rate >= 1.0 or (rate > 0.0 and self._rng.random() < rate)
            if fail:
                self._injected += 1
            return FaultDecision(delay_s=config.latency_ms / 1000.0, status=config.failure_status if fail else None)
