"""A lean HTTP/1.1 client for the load generator: asyncio protocols and keep-alive pools.

httpx costs about a millisecond of CPU per request, more than the BFF's own work on some
routes, so the generator would measure itself. This client does only what the benchmark
needs: one request at a time per connection, `Content-Length` or chunked bodies, no
redirects, no cookie jar (flows carry their own cookie), no TLS.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast


class ProtocolError(Exception):
    """The server answered something that is not HTTP/1.1 as this client reads it."""


@dataclass(slots=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-case names; the last value wins
    cookies: list[str]  # each Set-Cookie as "name=value"
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(slots=True)
class _Head:
    status: int
    headers: dict[str, str]
    cookies: list[str]
    length: int  # -1: chunked
    close: bool


def _parse_head(block: bytes) -> _Head:
    lines = block.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise ProtocolError("not an HTTP/1.x status line")
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        key = name.strip().lower().decode("latin-1")
        text = value.strip().decode("latin-1")
        if key == "set-cookie":
            cookies.append(text.split(";", 1)[0])
        else:
            headers[key] = text
    chunked = "chunked" in headers.get("transfer-encoding", "").lower()
    length = -1 if chunked else int(headers.get("content-length", "0"))
    close = headers.get("connection", "").lower() == "close" or parts[0] == b"HTTP/1.0"
    return _Head(int(parts[1]), headers, cookies, length, close)


def _chunked_body(buffer: bytearray) -> tuple[bytes, int] | None:
    """The decoded body and the bytes it took, or None while incomplete."""
    body = bytearray()
    at = 0
    while True:
        end = buffer.find(b"\r\n", at)
        if end < 0:
            return None
        size = int(bytes(buffer[at:end]).split(b";", 1)[0], 16)
        at = end + 2
        if size == 0:
            trailer_end = buffer.find(b"\r\n\r\n", at - 2)
            if trailer_end < 0:
                return None
            return bytes(body), trailer_end + 4
        if len(buffer) < at + size + 2:
            return None
        body += buffer[at : at + size]
        at += size + 2


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[Response] | None = None
        self.head: _Head | None = None
        self.reusable = True
        self.received = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.received = True
        self.buffer += data
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        try:
            response = self._parse()
        except (ProtocolError, ValueError) as exc:
            self.reusable = False
            waiter.set_exception(ProtocolError(str(exc)))
            return
        if response is not None:
            waiter.set_result(response)

    def _parse(self) -> Response | None:
        if self.head is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return None
            self.head = _parse_head(bytes(self.buffer[:end]))
            del self.buffer[: end + 4]
        head = self.head
        if head.length >= 0:
            if len(self.buffer) < head.length:
                return None
            body = bytes(self.buffer[: head.length])
            del self.buffer[: head.length]
        else:
            decoded = _chunked_body(self.buffer)
            if decoded is None:
                return None
            body, used = decoded
            del self.buffer[:used]
        self.head = None
        if head.close:
            self.reusable = False
        return Response(head.status, head.headers, head.cookies, body)

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError("the server closed the connection"))

    async def send(self, data: bytes) -> Response:
        assert self.transport is not None
        if self.transport.is_closing():
            raise ConnectionResetError("the connection is closed")
        self.received = False
        waiter: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self.waiter = waiter
        self.transport.write(data)
        try:
            return await waiter
        finally:
            self.waiter = None

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.close()


class Pool:
    """Keep-alive connections to one host:port, reused last-in first-out, grown on demand."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.authority = f"{host}:{port}".encode()
        self.idle: list[_Connection] = []
        self.requests = 0
        self.connects = 0
        self.retries = 0

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(_Connection, self.host, self.port)
        self.connects += 1
        return connection

    def _idle_connection(self) -> _Connection | None:
        """The most recently used live connection; ones the server closed are dropped."""
        while self.idle:
            connection = self.idle.pop()
            transport = connection.transport
            if connection.reusable and transport is not None and not transport.is_closing():
                return connection
            connection.close()
        return None

    def _encode(
        self, method: str, target: str, headers: Iterable[tuple[str, str]], body: bytes | None
    ) -> bytes:
        head = [f"{method} {target} HTTP/1.1\r\nHost: ".encode(), self.authority, b"\r\n"]
        for name, value in headers:
            head.append(f"{name}: {value}\r\n".encode("latin-1"))
        if body is not None:
            head.append(f"Content-Length: {len(body)}\r\n".encode())
        head.append(b"\r\n")
        if body is not None:
            head.append(body)
        return b"".join(head)

    async def request(
        self,
        method: str,
        target: str,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes | None = None,
    ) -> Response:
        data = self._encode(method, target, headers, body)
        self.requests += 1
        for attempt in (1, 2):
            connection = self._idle_connection() if attempt == 1 else None
            reused = connection is not None
            if connection is None:
                connection = await self._connect()
            try:
                response = await connection.send(data)
            except ConnectionResetError:
                connection.close()
                # A kept-alive connection the server closed while idle: nothing was read, so
                # the request was never processed. Anything else is the server's failure.
                if reused and attempt == 1 and not connection.received:
                    self.retries += 1
                    continue
                raise
            except BaseException:
                connection.close()  # cancelled or broken mid-exchange: never reuse it
                raise
            if connection.reusable:
                self.idle.append(connection)
            else:
                connection.close()
            return response
        raise AssertionError("unreachable")

    def close(self) -> None:
        for connection in self.idle:
            connection.close()
        self.idle.clear()


JSON_HEADERS = (("Content-Type", "application/json"),)


def json_body(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
