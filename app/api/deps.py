"""What the routers get from the lifespan: each object through its own typed dependency. The
identity, session and rate-limit dependencies beneath the routes read it directly instead
(`lifespan_state`).

The lifespan (app/main.py) yields a `State`; Starlette hands a copy of it to every request as
`request.state`. All `async def`: FastAPI runs a plain `def` dependency in a worker thread, a
hop that cost several milliseconds per request under load.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypedDict, cast

from fastapi import Depends, Request

from app.flows import BrowserSessions, Flows
from app.flows.webhooks import FlinksInbox
from app.identity.callers import Identities
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
    identities: Identities
    flinks_inbox: FlinksInbox


def _from_state(name: str) -> Callable[[Request], Awaitable[Any]]:
    """The dependency that hands a route the lifespan object called `name`; `Annotated` below
    gives it its type. One function per name, so FastAPI caches each per request."""

    async def dependency(request: Request) -> Any:
        return getattr(request.state, name)

    dependency.__name__ = f"get_{name}"
    return dependency


def lifespan_state(request: Request) -> State:
    """The lifespan's objects, read directly. For the identity, session and rate-limit
    dependencies that every flow route solves: FastAPI walks each dependency of each of them
    on every request, and an object apiece cost about 0.3 ms of CPU per Connect flow (README,
    "Performance")."""
    return cast(State, request.scope["state"])


SettingsDep = Annotated[Settings, Depends(_from_state("settings"))]
FlowsDep = Annotated[Flows, Depends(_from_state("flows"))]
SessionsDep = Annotated[BrowserSessions, Depends(_from_state("sessions"))]
LimiterDep = Annotated[RateLimiter, Depends(_from_state("limiter"))]
ClientAddressDep = Annotated[ClientAddress, Depends(_from_state("client_address"))]
ReadinessDep = Annotated[Readiness, Depends(_from_state("readiness"))]
MetricsDep = Annotated[Metrics, Depends(_from_state("metrics"))]
IdentitiesDep = Annotated[Identities, Depends(_from_state("identities"))]
FlinksInboxDep = Annotated[FlinksInbox, Depends(_from_state("flinks_inbox"))]
