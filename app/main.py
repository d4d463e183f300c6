"""The application factory and its lifespan (one httpx client, one Redis client, per process,
and the registry of the background tasks that settle flows with Flinks)."""

from __future__ import annotations

import gc
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta

import anyio
import httpx
from fastapi import FastAPI

from app.api import (
    connect,
    flows,
    health,
    hosted,
    internal,
    landing,
    links,
    oauth,
    tokens,
    web,
    webhooks,
)
from app.api.deps import State
from app.api.docs import mount_docs
from app.api.edge import EdgeLimitsMiddleware
from app.api.openapi import install_openapi, operation_id
from app.api.problems import UnhandledErrorMiddleware, add_exception_handlers
from app.api.security import BrowserSecurityMiddleware
from app.clock import Clock, SystemClock
from app.draining import Drain
from app.embedded_redis import EmbeddedRedis
from app.flinks import CircuitBreaker, FlinksClient, FlinksTimeouts
from app.flows import BrowserSessions, FlowConfig, Flows, LinkPolicy, TaskRegistry, Timing
from app.flows.events import DeliveryMetrics, DeliveryPolicy, EventDelivery, Events
from app.flows.webhooks import FlinksInbox, WebhookMetrics, WebhookPolicy
from app.identity.callers import Identities
from app.identity.jwt import JwtConfig, JwtVerifier
from app.observability import Metrics, RequestContextMiddleware, configure_logging, register_secret
from app.outbound import WebhookSender, outbound_client
from app.pools import http_pool_size, open_redis_pool, raise_file_limit
from app.ratelimit import ClientAddress, Limits, RateCounters, RateLimiter
from app.readiness import Readiness
from app.settings import Settings, decode_key, load_settings
from app.store import EventQueue, RedisClient, Store, WebhookInbox, close_redis, connect_redis

log = logging.getLogger("app.main")

# Outbound: bounded everywhere; per-call timeouts in the Flinks client tighten these. The
# pools are sized to BFF_MAX_INFLIGHT (app/pools.py).
HTTP_TIMEOUT = httpx.Timeout(30.0, connect=3.0, pool=2.0)

# Probes and metrics: not access-logged, and never refused for load (they must see it).
UNLIMITED_PATHS = ("/livez", "/readyz", "/metrics")


def _register_secrets(settings: Settings) -> None:
    for secret in (
        settings.flinks_secret_key,
        settings.flinks_api_key,
        settings.bff_encryption_key,
        settings.flinks_webhook_secret,
        settings.bff_webhook_secret,
    ):
        if secret is not None:
            register_secret(secret.get_secret_value())


def _webhook_policy(settings: Settings) -> WebhookPolicy:
    secret = settings.flinks_webhook_secret
    return WebhookPolicy(secret=secret.get_secret_value().encode() if secret else None)


def _event_delivery(
    settings: Settings,
    http: httpx.AsyncClient,
    redis: RedisClient,
    events: Events,
    clock: Clock,
    metrics: DeliveryMetrics,
) -> EventDelivery | None:
    """The events out's relay and consumer, when BFF_WEBHOOK_URL is set."""
    if settings.bff_webhook_url is None or settings.bff_webhook_secret is None:
        return None
    sender = WebhookSender(
        http,
        str(settings.bff_webhook_url),
        settings.bff_webhook_secret.get_secret_value(),
        timeout=settings.bff_webhook_timeout,
        # Development delivers to the receiver `flinks-bff dev` runs on this machine.
        allow_private=settings.bff_webhook_allow_private or not settings.is_production,
    )
    policy = _delivery_policy(settings)
    return EventDelivery(EventQueue(redis), sender, events, policy, clock, metrics)


def _delivery_policy(settings: Settings) -> DeliveryPolicy:
    # An attempt ends within BFF_WEBHOOK_TIMEOUT: an entry held twice that long (and a margin
    # for a busy event loop) is a dead consumer's. Taken too early, it is delivered twice.
    claim_after = timedelta(seconds=2 * settings.bff_webhook_timeout + 2)
    return DeliveryPolicy(
        max_age=timedelta(seconds=settings.bff_webhook_max_age), claim_after=claim_after
    )


def _encryption_key(settings: Settings) -> bytes:
    if settings.bff_encryption_key is not None:
        return decode_key(settings.bff_encryption_key)
    # Development only (production requires a key): loginIds stored by an earlier process
    # cannot be read after a restart, which is what a throwaway dev store should do anyway.
    log.warning(
        "encryption_key.ephemeral",
        extra={
            "meaning": "BFF_ENCRYPTION_KEY is not set: loginIds are encrypted with a key that "
            "lives only in this process, so a restart cannot read the ones it stored "
            "(fine for development; production refuses to start without a key)"
        },
    )
    return secrets.token_bytes(32)


def _flinks_client(
    settings: Settings, http: httpx.AsyncClient, clock: Clock, metrics: Metrics
) -> FlinksClient | None:
    if settings.flinks_customer_id is None or settings.flinks_secret_key is None:
        log.warning("flinks.not_configured")
        return None
    breaker = CircuitBreaker(
        failure_threshold=settings.flinks_breaker_failures,
        reset_after=settings.flinks_breaker_reset,
        clock=clock.monotonic,
    )
    metrics.watch_flinks_breaker(breaker)
    return FlinksClient(
        http,
        api_url=settings.flinks_base_url,
        customer_id=settings.flinks_customer_id,
        secret_key=settings.flinks_secret_key,
        api_key=settings.flinks_api_key,
        timeouts=FlinksTimeouts(
            mint_read=settings.flinks_timeout,
            oauth_read=settings.flinks_timeout,
            authorize_read=settings.flinks_authorize_timeout,
            deadline=settings.flinks_deadline,
            authorize_deadline=settings.flinks_authorize_deadline,
        ),
        breaker=breaker,
        clock=clock.monotonic,
    )


def _flow_config(settings: Settings) -> FlowConfig:
    return FlowConfig(
        connect_url=settings.connect_page_url,
        connect_origin=settings.connect_origin,
        demo=settings.flinks_demo,
        return_urls=settings.bff_return_urls,
        oauth_redirect_uri=settings.oauth_redirect_uri,
        connect_landing_url=landing.landing_url_prefix(str(settings.bff_public_url)),
        institutions=settings.flinks_institutions,
        connect_authorize=settings.flinks_connect_authorize,
        handoff_ttl=settings.bff_handoff_ttl,
        timing=Timing(
            authorize_wait=timedelta(seconds=settings.bff_authorize_wait),
            lease=timedelta(seconds=settings.bff_lease_ttl),
        ),
        links=LinkPolicy(link_ttl=settings.bff_link_ttl, data_ttl=settings.bff_data_ttl),
    )


def _identities(settings: Settings, http: httpx.AsyncClient, clock: Clock) -> Identities:
    verifier = None
    if settings.auth_mode == "jwt":
        # Settings refuses jwt mode without them.
        assert settings.bff_jwt_issuer is not None  # noqa: S101
        assert settings.bff_jwt_audience is not None  # noqa: S101
        verifier = JwtVerifier(
            JwtConfig(
                issuer=settings.bff_jwt_issuer,
                audience=settings.bff_jwt_audience,
                algorithms=settings.bff_jwt_algorithms,
                jwks_url=str(settings.bff_jwt_jwks_url) if settings.bff_jwt_jwks_url else None,
                public_key=settings.bff_jwt_public_key,
                leeway=settings.bff_jwt_leeway,
            ),
            http,
            clock=clock,
        )
    return Identities(
        mode=settings.auth_mode,
        verifier=verifier,
        header=settings.bff_auth_header,
        proxies=ClientAddress(settings.bff_trusted_proxies),
    )


def _freeze_startup_heap() -> None:
    """What start-up made (modules, the app, its clients) lives as long as the process: kept
    out of the collector's reach, a full collection walks only what requests made since.
    Unfrozen, each one walked the whole import graph: 68-85 ms with the loop stopped, every few
    seconds under load; frozen, 1.4-4.3 ms (bench/README.md, "Garbage collection"). Undone
    at shutdown, so that a process that runs apps one after another (the tests) can free
    them."""
    gc.collect()
    gc.freeze()


def create_app(settings: Settings | None = None, *, clock: Clock | None = None) -> FastAPI:
    """`clock` is where the app reads the time (tests inject one they can move on)."""
    settings = settings or load_settings()
    clock = clock or SystemClock()
    _register_secrets(settings)
    metrics = Metrics()
    webhook_metrics = WebhookMetrics(metrics.registry)
    delivery_metrics = DeliveryMetrics(metrics.registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[State]:
        drain = Drain()
        async with AsyncExitStack() as stack:
            stack.callback(log.info, "app.stopped")
            embedded: EmbeddedRedis | None = None
            redis_url = str(settings.redis_url) if settings.redis_url is not None else None
            if redis_url is None:
                # Production refuses to start without REDIS_URL (see Settings), so this is dev.
                embedded = await anyio.to_thread.run_sync(EmbeddedRedis().start)
                stack.callback(embedded.stop)
                redis_url = embedded.url
            raise_file_limit(settings.bff_max_inflight)
            http = outbound_client(
                max_connections=http_pool_size(settings.bff_max_inflight),
                timeout=HTTP_TIMEOUT,
                transport=settings.bff_http_transport,
            )
            stack.push_async_callback(http.aclose)
            redis = connect_redis(redis_url, cluster=settings.redis_cluster)
            encryption_key = _encryption_key(settings)
            stack.push_async_callback(close_redis, redis)
            await open_redis_pool(redis)
            store = Store(
                redis,
                encryption_key=encryption_key,
                flow_ttl=settings.bff_flow_ttl,
                state_ttl=settings.bff_state_ttl,
                login_ttl=settings.bff_login_ttl,
            )
            readiness = Readiness(store, drain, eviction_policy=await store.eviction_policy())
            # Closed first (the stack unwinds in reverse): its tasks release their leases
            # through Redis and may be mid-call to Flinks.
            tasks = TaskRegistry()
            stack.push_async_callback(tasks.close)
            if readiness.evicting:
                log.error("redis.evicting", extra={"maxmemory_policy": readiness.eviction_policy})
            identities = _identities(settings, http, clock)
            if identities.verifier is not None:  # a key-set fetch in flight is cancelled
                stack.push_async_callback(identities.verifier.aclose)
            events = Events(clock, enabled=settings.bff_webhook_url is not None)
            flows_service = Flows(
                store,
                _flinks_client(settings, http, clock, metrics),
                _flow_config(settings),
                clock=clock,
                tasks=tasks,
                events=events,
            )
            inbox = FlinksInbox(
                WebhookInbox(redis, store.sealer),
                flows_service.links,
                _webhook_policy(settings),
                clock,
                webhook_metrics,
            )
            state = State(
                settings=settings,
                flows=flows_service,
                sessions=BrowserSessions(store, ttl=settings.bff_session_ttl),
                limiter=RateLimiter(
                    RateCounters(redis),
                    Limits(
                        window=settings.bff_rate_limit_window,
                        per_ip=settings.bff_rate_limit_ip,
                        per_session=settings.bff_rate_limit_session,
                        ipv6_prefix=settings.bff_rate_limit_ipv6_prefix,
                    ),
                ),
                client_address=ClientAddress(settings.bff_trusted_proxies),
                readiness=readiness,
                metrics=metrics,
                identities=identities,
                flinks_inbox=inbox,
            )
            if settings.flinks_webhooks:  # stopped before Redis closes (the stack unwinds)
                inbox.start()
                stack.push_async_callback(inbox.stop)
            delivery = _event_delivery(settings, http, redis, events, clock, delivery_metrics)
            if delivery is not None:
                delivery.start()
                stack.push_async_callback(delivery.stop)
            drain.install()
            stack.callback(drain.uninstall)
            _freeze_startup_heap()
            stack.callback(gc.unfreeze)
            log.info(
                "app.started", extra={"env": settings.bff_env, "embedded_redis": bool(embedded)}
            )
            yield state
            drain.start()
            log.info("app.stopping")

    app = FastAPI(
        title="flinks-bff",
        version="0.1.0",
        summary="Link bank accounts through Flinks without exposing Flinks secrets to browsers.",
        lifespan=lifespan,
        # A slash variant is a 404, not a redirect: Starlette's redirect is built from the Host
        # header (an attacker's host, downgraded to http, re-sending POST bodies with a 307).
        redirect_slashes=False,
        generate_unique_id_function=operation_id,
        docs_url=None,  # app/api/docs.py serves Swagger UI from a package, not a CDN
        redoc_url=None,
        openapi_url=None if settings.is_production else "/openapi.json",
    )
    add_exception_handlers(app)
    for router in (
        health.router,
        tokens.router,
        connect.router,
        hosted.router,
        oauth.router,
        flows.router,
        links.router,
        internal.router,
        webhooks.router,
    ):
        app.include_router(router)
    app.include_router(landing.router)  # Connect's redirectUrl: served in production too
    app.include_router(hosted.page_router)  # Connect on mobile: in production too
    if not settings.is_production:
        web.mount_demo(app)
        mount_docs(app, "/openapi.json")
    install_openapi(app, settings)
    # Added last = outermost: the request id exists before anything else runs.
    app.add_middleware(UnhandledErrorMiddleware)
    # Inside the request id and the security headers (its answers carry both), outside the rest.
    app.add_middleware(
        EdgeLimitsMiddleware,
        max_inflight=settings.bff_max_inflight,
        max_body_bytes=settings.bff_max_body_bytes,
        exempt_paths=UNLIMITED_PATHS,
        registry=metrics.registry,
        # Flinks' webhooks carry whole account histories: their own cap, when they are on.
        body_caps={webhooks.PATH: settings.flinks_webhook_max_bytes}
        if settings.flinks_webhooks
        else None,
    )
    app.add_middleware(
        BrowserSecurityMiddleware,
        allowed_origins=settings.api_origins,
        connect_origin=settings.connect_origin,
        hsts=settings.secure_cookies,
    )
    app.add_middleware(RequestContextMiddleware, metrics=metrics, skip_paths=UNLIMITED_PATHS)
    return app


def create_app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` and workers: settings and logging from the environment."""
    settings = load_settings()
    configure_logging(settings.bff_log_level, console=settings.bff_log_format == "console")
    return create_app(settings)
