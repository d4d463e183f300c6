"""The one outbound HTTP client (Flinks, the JWT key set, events out): httpx's API over the
transport the bench chose (bench/README.md, "The client's transport").

- `aiohttp` (the default): PyPI's httpx-aiohttp, httpx over aiohttp's connection pool. On two
  cores it costs 0.35 ms of CPU per call where httpcore costs 0.6, and it stays flat as calls
  overlap where httpcore's pool does not (it scans every connection for every request: 2.8 ms
  per call at 32 in flight).
- `httpcore`: httpx's own, kept behind BFF_HTTP_TRANSPORT to measure against and to fall back
  on.

Both keep the same contract: explicit timeouts, a bounded pool, verified TLS, no redirects
followed (the client's), no cookies kept between users, no proxy from the environment (one
set there for other programs is ignored, and said so at start-up: calls go straight to
Flinks), the authorities of SSL_CERT_FILE / SSL_CERT_DIR when set (else certifi's), and
what the Flinks client relies on never to send a live /Authorize twice: `ConnectError`,
`ConnectTimeout` and `PoolTimeout` mean nothing was sent, every other failure may have been.
httpx-aiohttp's own mapping turns a connection that dies after the request was written
(aiohttp's `ServerDisconnectedError`) into `ConnectTimeout`, and lets some aiohttp errors (a
malformed answer) through unmapped, so `SafeAiohttpTransport` maps by the cause again.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from http.cookiejar import CookieJar
from typing import Literal

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

Transport = Literal["aiohttp", "httpcore"]
KEEPALIVE_SECONDS = 30.0
# What httpx (and curl, requests) would route through, and this client does not.
IGNORED_ENVIRONMENT = (
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "ALL_PROXY",
    "https_proxy",
    "http_proxy",
    "all_proxy",
)

log = logging.getLogger("app.outbound")


def outbound_client(
    *,
    max_connections: int,
    timeout: httpx.Timeout,
    transport: Transport = "aiohttp",
    verify: ssl.SSLContext | bool = True,
) -> httpx.AsyncClient:
    """The client the whole app shares. `verify` is for tests that bring their own CA."""
    if ignored := sorted({name.upper() for name in IGNORED_ENVIRONMENT if os.environ.get(name)}):
        log.warning("outbound.environment_ignored", extra={"variables": ignored})
    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=KEEPALIVE_SECONDS,
    )
    chosen: httpx.AsyncBaseTransport = (
        SafeAiohttpTransport(limits=limits, verify=verify)
        if transport == "aiohttp"
        else httpx.AsyncHTTPTransport(limits=limits, verify=verify, trust_env=True)
    )
    return httpx.AsyncClient(
        transport=chosen,
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,  # no proxy and no .netrc credentials from the environment
        # One client serves every user: a cookie Flinks sets must not ride along on the next
        # user's call.
        cookies=NoCookies(),
    )


class NoCookies(CookieJar):
    """A jar that keeps nothing. httpx hands every answer to its jar; a refusing policy would
    still parse each one's Set-Cookie headers against the request URL (0.1 ms of CPU a call
    under load, py-spy), so nothing is parsed at all."""

    def extract_cookies(self, response: object, request: object) -> None:
        return None

    def set_cookie(self, cookie: object) -> None:
        return None


class SafeAiohttpTransport(AiohttpTransport):
    """httpx-aiohttp's transport with a session built here and failures mapped by cause."""

    def __init__(self, *, limits: httpx.Limits, verify: ssl.SSLContext | bool) -> None:
        # trust_env: SSL_CERT_FILE / SSL_CERT_DIR, as httpx's own transport reads them.
        context = httpx.create_ssl_context(verify=verify, trust_env=True)

        def session() -> aiohttp.ClientSession:  # made on first use, inside the event loop
            connector = aiohttp.TCPConnector(
                limit=limits.max_connections or 0,
                keepalive_timeout=limits.keepalive_expiry,
                ssl=context,
            )
            # aiohttp's own jar would keep Flinks' cookies for the next user; httpx keeps none.
            return aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False
            )

        # The context made above, not a second one (loading the authorities took 39 ms here).
        super().__init__(limits=limits, verify=context, client=session)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout")
        if isinstance(timeout, dict):
            # aiohttp's `connect` bounds the wait for a pooled connection and the connect
            # together; httpx's are two phases.
            pool, connect = timeout.get("pool"), timeout.get("connect")
            both = None if pool is None or connect is None else pool + connect
            request.extensions = {**request.extensions, "timeout": {**timeout, "pool": both}}
        with _failures_mapped():
            response = await super().handle_async_request(request)
        assert isinstance(response.stream, httpx.AsyncByteStream)  # noqa: S101
        response.stream = _MappedStream(response.stream)
        return response


def mapped(exc: BaseException) -> httpx.TransportError:
    """The httpx error for an aiohttp failure (`exc` itself, or what httpx-aiohttp made of it),
    judged by what aiohttp raised. Only a failure to get a connection is "not sent"."""
    cause = exc if isinstance(exc, aiohttp.ClientError) else exc.__cause__
    if not isinstance(cause, aiohttp.ClientError) and isinstance(exc, httpx.TransportError):
        return exc  # httpx's own, not a translation of aiohttp's
    message = str(exc) or type(cause).__name__
    if isinstance(cause, aiohttp.ConnectionTimeoutError):  # the pool wait or the connect
        return httpx.ConnectTimeout(message)
    if isinstance(cause, aiohttp.ClientConnectorError):  # DNS, refused, TLS handshake
        return httpx.ConnectError(message)
    if isinstance(cause, aiohttp.ServerTimeoutError):  # sock_read: the request was written
        return httpx.ReadTimeout(message)
    if isinstance(cause, (aiohttp.NonHttpUrlClientError, aiohttp.InvalidUrlClientError)):
        return httpx.UnsupportedProtocol(message)
    # The connection closed or broke mid-exchange, or the answer could not be parsed.
    return httpx.RemoteProtocolError(message)


@contextmanager
def _failures_mapped() -> Iterator[None]:
    try:
        yield
    except (httpx.TransportError, aiohttp.ClientError) as exc:
        error = mapped(exc)
        if error is exc:
            raise
        raise error from exc


class _MappedStream(httpx.AsyncByteStream):
    def __init__(self, stream: httpx.AsyncByteStream) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _failures_mapped():
            async for chunk in self._stream:
                yield chunk

    async def aclose(self) -> None:
        with _failures_mapped():
            await self._stream.aclose()
