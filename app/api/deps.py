"""What the routers get from the lifespan: each object through its own typed dependency.

The lifespan (app/main.py) yields a `State`; Starlette hands a copy of it to every request as
`request.state`. All `async def`: FastAPI runs a plain `def` dependency in a worker thread, a
hop that cost several milliseconds per request under load.
"""

from __future__ import annotations

from typing import Annotated, TypedDict

from fastapi import Depends, Request

from app.flows import BrowserSessions, Flows
from app.observability import Metrics
from app.ratelimit import ClientAddress, RateLimiter
from app.readiness import Readiness
from app.settings import Settings


class State(TypedDict):
    settings: Settings
    flows: Flows
    sessions: BrowserSessions
    limiter: RateLimiter
    client_address: ClientAddress
    readiness: Readiness
    metrics: Metrics


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.state.settings
    return settings


async def get_flows(request: Request) -> Flows:
    flows: Flows = request.state.flows
    return flows


async def get_sessions(request: Request) -> BrowserSessions:
    sessions: BrowserSessions = request.state.sessions
    return sessions


async def get_limiter(request: Request) -> RateLimiter:
    limiter: RateLimiter = request.state.limiter
    return limiter


async def get_client_address(request: Request) -> ClientAddress:
    client_address: ClientAddress = request.state.client_address
    return client_address


async def get_readiness(request: Request) -> Readiness:
    readiness: Readiness = request.state.readiness
    return readiness


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.state.metrics
    return metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
FlowsDep = Annotated[Flows, Depends(get_flows)]
SessionsDep = Annotated[BrowserSessions, Depends(get_sessions)]
LimiterDep = Annotated[RateLimiter, Depends(get_limiter)]
ClientAddressDep = Annotated[ClientAddress, Depends(get_client_address)]
ReadinessDep = Annotated[Readiness, Depends(get_readiness)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
