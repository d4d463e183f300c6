"""The BFF on a real socket with the HTTP protocol `flinks-bff serve` runs, and raw-socket tools
for the requests no HTTP client library will send (half-sent, oversized, slow)."""

from __future__ import annotations

import contextlib
import http.client
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.types import ASGIApp

from app.http_server import EdgeLimits, edge_protocol
from app.settings import Settings
from tests.ports import serve_in_thread
from tests.waiting import scaled


@contextlib.contextmanager
def edge_bff(app: ASGIApp, settings: Settings) -> Iterator[str]:
    """uvicorn in a thread, with the edge protocol and the limits of `settings`; the base URL."""
    protocol = edge_protocol(EdgeLimits.from_settings(settings))
    options = {"log_config": None, "http": protocol}
    with serve_in_thread(app, name="bff", options=options) as served:
        yield served.url


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=scaled(10))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def head(method: str, path: str, *lines: str) -> bytes:
    """A request line and headers (Host first), without the blank line that ends them."""
    return "\r\n".join([f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *lines, ""]).encode()


def read_response(sock: socket.socket, method: str = "GET") -> RawResponse:
    """One response from the socket (waiting at most the socket's timeout for it)."""
    response = http.client.HTTPResponse(sock, method=method)
    response.begin()
    body = response.read()
    headers = {name.lower(): value for name, value in response.getheaders()}
    return RawResponse(response.status, headers, body)


def read_until_closed(sock: socket.socket) -> bytes | None:
    """What the server sends until it closes the connection; None if it has not closed it
    within the socket's timeout."""
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return received


def closed_by_server(sock: socket.socket) -> bool:
    return read_until_closed(sock) is not None
