"""The long-lived resources one app instance owns, created and closed by its lifespan."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from app.draining import Drain
from app.embedded_redis import EmbeddedRedis
from app.flows import Flows
from app.observability import Metrics
from app.ratelimit import ClientAddress, RateLimiter
from app.sessions import BrowserSessions
from app.settings import Settings
from app.store import Store


@dataclass(slots=True)
class StoreCheck:
    """What the start-up check of Redis found (security.md E2)."""

    eviction_policy: str | None = None

    @property
    def evicting(self) -> bool:
        return bool(self.eviction_policy and self.eviction_policy.startswith("allkeys-"))


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    http: httpx.AsyncClient
    store: Store
    metrics: Metrics
    flows: Flows
    sessions: BrowserSessions
    limiter: RateLimiter
    client_address: ClientAddress
    embedded_redis: EmbeddedRedis | None
    drain: Drain
    store_check: StoreCheck
