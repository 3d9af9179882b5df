"""Batched, idempotent POSTs to the REST microservice, with retries and backoff.

Every item carries an idempotency key, so a retry or a redelivery of the same
change is harmless: the service stores each key once. Nothing here raises on an
HTTP failure; callers get back which items were delivered and which failed, and
send the failures to the DLQ.
"""
from __future__ import annotations

import dataclasses
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import requests
from requests.adapters import HTTPAdapter

from cdc_platform.delivery.rest_contract import BATCH_PATH

# 408 Request Timeout and 429 Too Many Requests say "try later"; every other 4xx says
# the request itself is wrong, so repeating it cannot help.
RETRYABLE_4XX = frozenset({408, 429})
# A 4xx for the whole batch that one bad item can cause: split the batch to isolate it.
SPLITTABLE_STATUSES = frozenset({400, 413, 422})
MAX_ERROR_BODY = 300


@dataclass(frozen=True)
class DeliveryItem:
    idempotency_key: str
    event: Any  # the change as a JSON-safe dict; anything else is the service's to reject


@dataclass(frozen=True)
class FailedItem:
    item: DeliveryItem
    error: str
    attempts: int  # HTTP requests that carried this item
    retryable: bool


@dataclass
class DeliveryResult:
    delivered: list[DeliveryItem] = field(default_factory=list)
    failed: list[FailedItem] = field(default_factory=list)

    def extend(self, other: "DeliveryResult") -> None:
        self.delivered.extend(other.delivered)
        self.failed.extend(other.failed)


def is_retryable_status(status: int) -> bool:
    return status >= 500 or status in RETRYABLE_4XX


@dataclass(frozen=True)
class RetryPolicy:
    """Up to ``max_attempts`` requests per batch; before retry n the client waits
    ``min(max_backoff_s, base_backoff_s * 2**(n-1))``, of which the share ``jitter``
    is random so that many executors retrying at once spread out."""

    max_attempts: int = 3
    base_backoff_s: float = 0.5
    max_backoff_s: float = 5.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.base_backoff_s < 0 or self.max_backoff_s < 0:
            raise ValueError("backoff times must not be negative")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"jitter must be within 0..1, got {self.jitter}")

    def ceiling(self, attempt: int) -> float:
        """The largest delay after failed attempt ``attempt`` (1-based)."""
        if attempt < 1:
            raise ValueError(f"attempt numbers start at 1, got {attempt}")
        exponent = min(attempt - 1, 62)  # 2**62 * any sane base is far beyond the cap
        return min(self.max_backoff_s, self.base_backoff_s * float(2 ** exponent))

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay after failed attempt ``attempt``, within [ceiling*(1-jitter), ceiling]."""
        ceiling = self.ceiling(attempt)
        draw = (rng or random).random()
        return ceiling * (1.0 - self.jitter) + ceiling * self.jitter * draw

    def delay(self, attempt: int, retry_after_s: float | None = None, rng: random.Random | None = None) -> float:
        """The backoff, stretched to the server's Retry-After if it asks for longer (still capped)."""
        delay = self.backoff(attempt, rng)
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, self.max_backoff_s))
        return delay


@dataclass(frozen=True)
class Attempt:
    ok: bool
    retryable: bool
    status: int | None = None
    error: str | None = None
    retry_after_s: float | None = None


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date; the backoff alone is good enough


@dataclass(frozen=True)
class _Encoded:
    item: DeliveryItem
    json: str  # the item as it goes on the wire


def _encode(items: Sequence[DeliveryItem]) -> tuple[list[_Encoded], list[FailedItem]]:
    """Serialise each item on its own, so one that is not valid JSON (NaN, a set...)
    fails alone instead of failing its whole batch."""
    encoded, failed = [], []
    for item in items:
        try:
            text = json.dumps({"idempotency_key": item.idempotency_key, "event": item.event},
                              allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            failed.append(FailedItem(item, f"event is not valid JSON: {exc}", 0, False))
            continue
        encoded.append(_Encoded(item, text))
    return encoded, failed


def post_once(session: requests.Session, endpoint: str, token: str, encoded: Sequence[_Encoded],
              timeout: float) -> Attempt:
    """One POST of the items; every failure becomes an Attempt, never an exception."""
    body = '{"events":[' + ",".join(e.json for e in encoded) + "]}"
    try:
        response = session.post(endpoint, data=body.encode(), timeout=timeout, headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    except requests.Timeout as exc:
        return Attempt(ok=False, retryable=True, error=f"timeout after {timeout}s: {exc}")
    except requests.ConnectionError as exc:
        return Attempt(ok=False, retryable=True, error=f"connection error: {exc}")
    except requests.RequestException as exc:
        # A malformed URL and the like: repeating the same request cannot succeed.
        return Attempt(ok=False, retryable=False, error=f"request not sent: {type(exc).__name__}: {exc}")
    status = response.status_code
    if 200 <= status < 300:
        return Attempt(ok=True, retryable=False, status=status)
    text = " ".join(response.text[:MAX_ERROR_BODY].split())
    return Attempt(ok=False, retryable=is_retryable_status(status), status=status,
                   error=f"HTTP {status}: {text}", retry_after_s=_retry_after(response))


def post_batch(
    session: requests.Session,
    api_url: str,
    token: str,
    items: Sequence[DeliveryItem],
    timeout: float,
    *,
    policy: RetryPolicy = RetryPolicy(),
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> DeliveryResult:
    """POST ``items`` as one batch to ``api_url`` + BATCH_PATH, retrying per ``policy``.

    A batch rejected with 400/413/422 is split in halves until the offending items are
    isolated, so one poison item does not send its neighbours to the DLQ.
    """
    encoded, unencodable = _encode(items)
    result = DeliveryResult(failed=unencodable)
    if encoded:
        endpoint = api_url.rstrip("/") + BATCH_PATH
        result.extend(_post_with_retries(session, endpoint, token, encoded, timeout, policy, sleep, rng, 0))
    return result


def _post_with_retries(session, endpoint, token, encoded, timeout, policy, sleep, rng, prior_attempts) -> DeliveryResult:
    attempt = 0
    while True:
        attempt += 1
        outcome = post_once(session, endpoint, token, encoded, timeout)
        if outcome.ok:
            return DeliveryResult(delivered=[e.item for e in encoded])
        if not outcome.retryable or attempt >= policy.max_attempts:
            break
        sleep(policy.delay(attempt, outcome.retry_after_s, rng))
    attempts = prior_attempts + attempt
    if outcome.status in SPLITTABLE_STATUSES and len(encoded) > 1:
        middle = len(encoded) // 2
        result = _post_with_retries(session, endpoint, token, encoded[:middle], timeout, policy, sleep, rng,
                                    attempts)
        result.extend(_post_with_retries(session, endpoint, token, encoded[middle:], timeout, policy, sleep, rng,
                                         attempts))
        return result
    return DeliveryResult(failed=[FailedItem(e.item, outcome.error or "unknown error", attempts, outcome.retryable)
                                  for e in encoded])


@dataclass
class CircuitBreaker:
    """Once a batch has used up its retries on an unreachable service, later batches
    try only once: a dead API then costs one request per batch, not the full backoff."""

    tripped: bool = False

    def policy(self, policy: RetryPolicy) -> RetryPolicy:
        return dataclasses.replace(policy, max_attempts=1) if self.tripped else policy

    def record(self, result: DeliveryResult) -> None:
        if result.delivered:
            self.tripped = False
        elif result.failed and all(f.retryable for f in result.failed):
            self.tripped = True


def deliver(
    session: requests.Session,
    api_url: str,
    token: str,
    items: Sequence[DeliveryItem],
    *,
    batch_size: int = 200,
    timeout: float = 5.0,
    policy: RetryPolicy = RetryPolicy(),
    breaker: CircuitBreaker | None = None,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> DeliveryResult:
    """POST ``items`` in batches of ``batch_size``; see :func:`post_batch`."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    breaker = breaker if breaker is not None else CircuitBreaker()
    result = DeliveryResult()
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        outcome = post_batch(session, api_url, token, chunk, timeout,
                             policy=breaker.policy(policy), sleep=sleep, rng=rng)
        breaker.record(outcome)
        result.extend(outcome)
    return result


def make_session(pool_size: int = 4) -> requests.Session:
    """A pooled session; retries are ours, so urllib3's own are off."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
