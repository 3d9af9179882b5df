"""The FastAPI app: idempotent batch ingestion plus read endpoints for checks and tests."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from cdc_platform.delivery.rest_contract import (
    BATCH_PATH,
    COUNT_PATH,
    EVENTS_PATH,
    FAULTS_PATH,
    HEALTH_PATH,
    MAX_BATCH_ITEMS,
    MAX_KEY_LENGTH,
)
from cdc_local.restapi.faults import FaultConfig, FaultInjector
from cdc_local.restapi.store import EventStore

log = logging.getLogger("cdc_local.restapi")


class BatchItem(BaseModel):
    idempotency_key: str = Field(min_length=1, max_length=MAX_KEY_LENGTH)
    event: dict[str, Any]


class Batch(BaseModel):
    events: list[BatchItem] = Field(min_length=1, max_length=MAX_BATCH_ITEMS)


def create_app(db_path: Path, token: str, admin_token: str) -> FastAPI:
    """``token`` authorises deliveries and reads; ``admin_token`` alone the fault-injection
    endpoints, so a delivery client (the stream, the DLQ job) can never break the service."""
    if not token or not admin_token:
        raise ValueError("the API token and the admin token must not be empty")
    if secrets.compare_digest(token.encode(), admin_token.encode()):
        raise ValueError("the admin token must differ from the delivery token")
    store = EventStore(db_path)
    faults = FaultInjector()
    bearer = HTTPBearer(auto_error=False)

    def bearer_check(expected: bytes):
        def check(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
            if credentials is None or not secrets.compare_digest(credentials.credentials.encode(), expected):
                raise HTTPException(status_code=401, detail="missing or invalid bearer token",
                                    headers={"WWW-Authenticate": "Bearer"})
        return check

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        store.close()

    app = FastAPI(title="cdc_platform engagement events API", version="1", lifespan=lifespan)
    app.state.store = store
    app.state.faults = faults
    auth = [Depends(bearer_check(token.encode()))]
    admin = [Depends(bearer_check(admin_token.encode()))]

    @app.get(HEALTH_PATH)
    def health() -> dict[str, str]:
        store.ping()
        return {"status": "ok"}

    @app.post(BATCH_PATH, dependencies=auth)
    async def post_batch(batch: Batch):
        keys = [item.idempotency_key for item in batch.events]
        decision = faults.decide(keys)
        if decision.delay_s:
            await asyncio.sleep(decision.delay_s)
        if decision.status is not None:
            return JSONResponse(status_code=decision.status, content={"detail": "injected fault"})
        inserted = await run_in_threadpool(
            store.insert_batch, [(item.idempotency_key, item.event) for item in batch.events]
        )
        accepted = sum(inserted)
        return {
            "accepted": accepted,
            "duplicates": len(inserted) - accepted,
            "results": [
                {"idempotency_key": key, "status": "accepted" if new else "duplicate"}
                for key, new in zip(keys, inserted)
            ],
        }

    @app.get(COUNT_PATH, dependencies=auth)
    def count(prefix: str | None = Query(default=None, min_length=1)) -> dict[str, int]:
        return {"count": store.count(prefix)}

    @app.get(EVENTS_PATH, dependencies=auth)
    def list_events(row_id: int | None = None, row_min: int | None = None, row_max: int | None = None,
                    limit: int = Query(default=100, ge=1, le=1000)) -> dict:
        if row_min is not None or row_max is not None:
            # A range of row ids, ordered by row and position: bulk reads (the benchmark's freshness).
            if row_id is not None:
                raise HTTPException(status_code=422, detail="row_id and row_min/row_max exclude each other")
            if row_min is None or row_max is None or row_min > row_max:
                raise HTTPException(status_code=422, detail="row_min and row_max both, with row_min <= row_max")
            return {"row_min": row_min, "row_max": row_max, "events": store.by_row_range(row_min, row_max, limit)}
        events = store.by_row(row_id, limit) if row_id is not None else store.latest(limit)
        return {"events": events}

    @app.get(EVENTS_PATH + "/{idempotency_key:path}", dependencies=auth)
    def get_event(idempotency_key: str) -> dict:
        found = store.get(idempotency_key)
        if found is None:
            raise HTTPException(status_code=404, detail=f"no event with idempotency key {idempotency_key!r}")
        return found

    @app.get(FAULTS_PATH, dependencies=admin)
    def get_faults() -> dict:
        return faults.snapshot()

    @app.post(FAULTS_PATH, dependencies=admin)
    def set_faults(config: FaultConfig) -> dict:
        faults.set(config)
        log.warning("faults set: %s", config.model_dump())
        return faults.snapshot()

    @app.delete(FAULTS_PATH, dependencies=admin)
    def clear_faults() -> dict:
        faults.clear()
        log.warning("faults cleared")
        return faults.snapshot()

    return app
