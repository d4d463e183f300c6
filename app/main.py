"""The application factory and its lifespan (one httpx client, one Redis client, per process)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TypedDict

import anyio
import httpx
from fastapi import FastAPI

from app.api import health
from app.api.problems import UnhandledErrorMiddleware, add_exception_handlers
from app.embedded_redis import EmbeddedRedis
from app.observability import Metrics, RequestContextMiddleware, configure_logging, register_secret
from app.services import Services
from app.settings import Settings, load_settings
from app.store import Store, connect_redis

log = logging.getLogger("app.main")

# Outbound: bounded everywhere; per-call timeouts in the Flinks client tighten these.
HTTP_TIMEOUT = httpx.Timeout(30.0, connect=3.0, pool=2.0)
HTTP_LIMITS = httpx.Limits(max_connections=200, max_keepalive_connections=50, keepalive_expiry=30)


class LifespanState(TypedDict):
    services: Services


def _register_secrets(settings: Settings) -> None:
    for secret in (settings.flinks_secret_key, settings.flinks_api_key, settings.encryption_key):
        if secret is not None:
            register_secret(secret.get_secret_value())


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    _register_secrets(settings)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[LifespanState]:
        async with AsyncExitStack() as stack:
            embedded: EmbeddedRedis | None = None
            redis_url = str(settings.redis_url) if settings.redis_url is not None else None
            if redis_url is None:
                # Production refuses to start without REDIS_URL (see Settings), so this is dev.
                embedded = await anyio.to_thread.run_sync(EmbeddedRedis().start)
                stack.callback(embedded.stop)
                redis_url = embedded.url
            http = httpx.AsyncClient(
                timeout=HTTP_TIMEOUT, limits=HTTP_LIMITS, follow_redirects=False
            )
            stack.push_async_callback(http.aclose)
            redis = connect_redis(redis_url)
            stack.push_async_callback(redis.aclose, True)  # True: close its pool too
            services = Services(
                settings=settings,
                http=http,
                redis=redis,
                store=Store(redis),
                metrics=metrics,
                embedded_redis=embedded,
            )
            app.state.services = services  # for tests and tools; requests use lifespan state
            log.info("app.started", extra={"env": settings.env, "embedded_redis": bool(embedded)})
            yield {"services": services}
            log.info("app.stopping")

    app = FastAPI(
        title="flinks-bff",
        version="0.1.0",
        summary="Link bank accounts through Flinks without exposing Flinks secrets to browsers.",
        lifespan=lifespan,
        docs_url=None if settings.is_production else "/docs",
        redoc_url=None,
        openapi_url=None if settings.is_production else "/openapi.json",
    )
    add_exception_handlers(app)
    app.include_router(health.router)
    # Added last = outermost: the request id exists before anything else runs.
    app.add_middleware(UnhandledErrorMiddleware)
    app.add_middleware(
        RequestContextMiddleware, metrics=metrics, skip_paths=("/livez", "/readyz", "/metrics")
    )
    return app


def create_app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` and workers: settings and logging from the environment."""
    settings = load_settings()
    configure_logging(settings.log_level)
    return create_app(settings)
