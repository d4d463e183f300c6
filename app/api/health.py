"""Liveness, readiness and metrics. None of these call Flinks."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from starlette.responses import Response

from app.api.deps import ServicesDep
from app.api.problems import problem_responses
from app.errors import ShuttingDown, StoreMisconfigured, StoreUnavailable

router = APIRouter(tags=["health"])

READY_TIMEOUT = 1.0


class HealthStatus(BaseModel):
    status: str


@router.get("/livez", summary="The process is up")
async def livez() -> HealthStatus:
    return HealthStatus(status="ok")


@router.get(
    "/readyz",
    summary="Redis answers (503 store_unavailable if not)",
    responses=problem_responses(500, 503),
)
async def readyz(services: ServicesDep) -> HealthStatus:
    if services.drain.active:
        raise ShuttingDown
    if services.store_check.evicting:
        # An evicting Redis may drop OAuth state or a flow at any time: not safe to serve.
        raise StoreMisconfigured
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            await services.store.ping()
    except TimeoutError as exc:
        raise StoreUnavailable from exc
    return HealthStatus(status="ready")


@router.get("/metrics", include_in_schema=False)
async def metrics(services: ServicesDep) -> Response:
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)
