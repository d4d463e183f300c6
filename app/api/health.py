"""Liveness, readiness and metrics. None of these call Flinks."""

from __future__ import annotations

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from starlette.responses import Response

from app.api.deps import MetricsDep, ReadinessDep

# Probes for the platform, not API operations: kept out of the OpenAPI document.
router = APIRouter(tags=["health"], include_in_schema=False)


class HealthStatus(BaseModel):
    status: str


@router.get("/livez", summary="The process is up")
async def livez() -> HealthStatus:
    return HealthStatus(status="ok")


@router.get(
    "/readyz",
    summary="Redis answers (503 store_unavailable if not)",
)
async def readyz(readiness: ReadinessDep) -> HealthStatus:
    await readiness.check()
    return HealthStatus(status="ready")


@router.get("/metrics", include_in_schema=False)
async def metrics(metrics: MetricsDep) -> Response:
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
