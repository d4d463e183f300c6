"""Limits on what one process takes on, applied before any work: requests in flight, body size.

- In flight: at most `max_inflight` requests at once; the next gets 503 `overloaded` with
  `Retry-After` at once (health and metrics are exempt, so probes still answer). The outbound
  pools are sized to this cap (app/pools.py), so a request that got in does not fail for want
  of a connection. uvicorn's `limit_concurrency` does not do this: it counts idle keep-alive
  connections too and answers in plain text.
- Body: a `Content-Length` over `max_body_bytes` gets 413 `payload_too_large` before a byte of
  the body is read; a body without one (chunked) is counted as it streams and cut at the cap.
  Starlette reads a body whole into memory, so without a cap one request could take it all.
  FastAPI's own `max_body_size` is not used: some of its paths answer plain text, and none
  closes the connection, so uvicorn would go on reading the rest of the body. A path may have
  a cap of its own (`body_caps`): Flinks' webhooks carry whole account histories.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.problems import problem_response
from app.errors import AppError, Overloaded, PayloadTooLarge

RETRY_AFTER_SECONDS = 1


class EdgeLimitsMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_inflight: int,
        max_body_bytes: int,
        exempt_paths: Iterable[str],
        registry: CollectorRegistry,
        body_caps: Mapping[str, int] | None = None,
    ) -> None:
        self.app = app
        self.max_inflight = max_inflight
        self.max_body_bytes = max_body_bytes
        self.body_caps = dict(body_caps or {})  # exact path -> its own cap
        self.exempt_paths = frozenset(exempt_paths)
        self.inflight = 0
        self._gauge = Gauge(
            "http_requests_in_flight",
            "Requests being served now, out of BFF_MAX_INFLIGHT (probes not counted).",
            registry=registry,
        )
        self._shed = Counter(
            "http_requests_shed_total",
            "Requests refused with 503 overloaded because BFF_MAX_INFLIGHT were in flight.",
            registry=registry,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt_paths:
            await self.app(scope, receive, send)
            return
        if self.inflight >= self.max_inflight:
            self._shed.inc()
            overloaded = Overloaded(headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
            await _answer(overloaded, scope, receive, send)
            return
        self.inflight += 1
        self._gauge.inc()
        try:
            await self._within_body_cap(scope, receive, send)
        finally:
            self.inflight -= 1
            self._gauge.dec()

    async def _within_body_cap(self, scope: Scope, receive: Receive, send: Send) -> None:
        cap = self.body_caps.get(scope["path"], self.max_body_bytes)
        declared = _content_length(scope)
        if declared is not None and declared > cap:
            await _answer(_too_large(cap), scope, receive, send)
            return

        received = 0
        cut = False
        started = False

        async def counted_receive() -> Message:
            nonlocal received, cut
            if cut:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    # To the app the client is gone; the client hears 413 below.
                    cut = True
                    return {"type": "http.disconnect"}
            return message

        async def send_unless_cut(message: Message) -> None:
            nonlocal started
            if cut and not started:
                return  # the app's answer to a cut body is replaced by the 413
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, counted_receive, send_unless_cut)
        if cut and not started:
            await _answer(_too_large(cap), scope, receive, send)


def _too_large(cap: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The body may be at most {cap} bytes.",
        # The rest of the body is not read: the connection cannot carry another request.
        headers={"Connection": "close"},
    )


async def _answer(error: AppError, scope: Scope, receive: Receive, send: Send) -> None:
    response = problem_response(
        error.status, error.code, error.title, detail=error.detail, headers=error.headers
    )
    await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    value = Headers(scope=scope).get("content-length")
    if value is None or not value.isdigit():
        return None  # uvicorn's parser refuses a malformed one before the app sees it
    return int(value)
