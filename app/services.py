"""The long-lived resources one app instance owns, created and closed by its lifespan."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from redis.asyncio import Redis

from app.draining import Drain
from app.embedded_redis import EmbeddedRedis
from app.flows import Flows
from app.observability import Metrics
from app.ratelimit import ClientAddress, RateLimiter
from app.settings import Settings
from app.store import Store


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    http: httpx.AsyncClient
    redis: Redis
    store: Store
    metrics: Metrics
    flows: Flows
    limiter: RateLimiter
    client_address: ClientAddress
    embedded_redis: EmbeddedRedis | None
    drain: Drain
