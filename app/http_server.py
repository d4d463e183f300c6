"""The HTTP/1.1 protocol `flinks-bff serve` runs: uvicorn's, plus limits on what a client sends.

uvicorn's httptools protocol (the one it picks by default) limits neither the size nor the
number of request headers, and has no timeout for reading a request: a client could send 1 MiB
of headers, or 2,000 of them, or a byte every few seconds to hold a connection for ever
(slowloris). `EdgeHttpProtocol` adds exactly those checks and nothing else:

- a request line plus headers over `max_header_bytes`, or more than `max_headers` headers:
  431 `headers_too_large`, counted as the bytes arrive (a huge header is refused before it is
  all buffered), and the connection is closed;
- a request not fully received `request_timeout` seconds after its first byte (the first one
  of a connection: after the connection opened) is cut: 408 `request_timeout` while its headers
  are incomplete, a plain close once the app is reading its body (the app sees a disconnect).
  The time the app then takes to answer is not limited here; idle keep-alive connections are
  uvicorn's own `timeout_keep_alive`.

The body size and requests in flight are limited in the app (app/api/edge.py).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from app.api.problems import PROBLEM_JSON, PROBLEM_TYPE_BASE, Problem
from app.errors import AppError, HeadersTooLarge, RequestTimeout
from app.settings import Settings, load_settings

log = logging.getLogger("app.http")


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    max_header_bytes: int = 32 * 1024
    max_headers: int = 100
    request_timeout: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> EdgeLimits:
        return cls(
            max_header_bytes=settings.bff_max_header_bytes,
            max_headers=settings.bff_max_headers,
            request_timeout=settings.bff_request_timeout,
        )


@functools.cache
def _limits_from_environment() -> EdgeLimits:
    # uvicorn builds protocols itself (in each worker process), so they read the same settings
    # the app factory reads.
    return EdgeLimits.from_settings(load_settings())


class _Refused(Exception):
    """Raised in a parser callback to stop parsing; uvicorn then calls `send_400_response`."""


class EdgeHttpProtocol(HttpToolsProtocol):
    limits: ClassVar[EdgeLimits | None] = None  # None: from the environment's settings

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.edge = self.limits or _limits_from_environment()
        self._deadline: asyncio.TimerHandle | None = None
        self._in_head = False
        self._head_bytes = 0  # request target and complete headers, as parsed
        self._head_pending = 0  # bytes fed while the head is incomplete, parsed or not
        self._refusal: AppError | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._in_head and not self.transport.is_closing():
            # A header still arriving sits in the parser's buffer, unseen by on_header.
            self._head_pending += len(data)
            if self._head_pending > self.edge.max_header_bytes:
                self._refuse(self._head_too_large())

    # Parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = self._head_pending = 0
        if self._deadline is None:
            self._arm()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._count_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        if len(self.headers) > self.edge.max_headers:
            self._refuse_while_parsing(HeadersTooLarge(f"At most {self.edge.max_headers} headers."))
        self._count_head(len(name) + len(value) + 4)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    # Refusals

    def send_400_response(self, msg: str) -> None:
        if self._refusal is None:
            super().send_400_response(msg)
        else:
            self._refuse(self._refusal)

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.edge.max_header_bytes:
            self._refuse_while_parsing(self._head_too_large())

    def _head_too_large(self) -> HeadersTooLarge:
        limit = self.edge.max_header_bytes
        return HeadersTooLarge(f"The request line and headers may be at most {limit} bytes.")

    def _refuse_while_parsing(self, error: AppError) -> None:
        self._refusal = error
        raise _Refused

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(self.edge.request_timeout, self._on_deadline)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _on_deadline(self) -> None:
        self._deadline = None
        if self._in_head or self.cycle is None:
            self._refuse(RequestTimeout())
        else:
            log.info("http.refused", extra={"code": RequestTimeout.code})
            self.transport.close()

    def _refuse(self, error: AppError) -> None:
        self._disarm()
        if self.transport.is_closing():
            return
        log.info("http.refused", extra={"code": error.code})
        # Answer only when no response of an earlier (pipelined) request is being written.
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(_problem_bytes(error, self.server_state.default_headers))
        self.transport.close()


def _problem_bytes(error: AppError, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """The same problem+json the app answers, written before there is an app request."""
    request_id = secrets.token_hex(16)
    body = Problem(
        type=PROBLEM_TYPE_BASE + error.code,
        title=error.title,
        status=error.status,
        code=error.code,
        detail=error.detail,
        request_id=request_id,
    ).model_dump_json(exclude_none=True)
    headers = [
        *default_headers,
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        (b"x-content-type-options", b"nosniff"),
        (b"x-request-id", request_id.encode()),
        (b"connection", b"close"),
    ]
    status = f"HTTP/1.1 {error.status} {HTTPStatus(error.status).phrase}\r\n".encode()
    lines = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    return status + lines + b"\r\n" + body.encode()


def edge_protocol(limits: EdgeLimits) -> type[EdgeHttpProtocol]:
    """The protocol with these limits, for a server run in this process (tests, tools)."""
    return type("EdgeHttpProtocol", (EdgeHttpProtocol,), {"limits": limits})
