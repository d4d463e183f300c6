"""Ports for the servers the tests start, and uvicorn in a thread on one.

The one way to get a port: `reserve_port()` binds a socket to a port the OS picks and keeps it
bound (SO_REUSEADDR, not listening) until the server is up. No other process is handed that
port meanwhile, so parallel workers and parallel runs on one machine never collide, and there
is no window between "found a free port" and "bound it". A server in this process takes the
socket itself; a child process binds the port with SO_REUSEADDR (uvicorn and Valkey do) while
the reservation still holds it, and the reservation is released once the child listens.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from tests.waiting import scaled, wait_until

HOST = "127.0.0.1"
# Longer than any client's keep-alive expiry (httpx: 5 s by default, the BFF's own: 30 s), so
# a client never sends a request on a connection the server is closing for idleness.
KEEP_ALIVE_SECONDS = 75


class PortReservation:
    def __init__(self, host: str = HOST) -> None:
        self.host = host
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind((host, 0))
        self.port: int = self.socket.getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def release(self) -> None:
        self.socket.close()

    def __enter__(self) -> PortReservation:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def reserve_port(host: str = HOST) -> PortReservation:
    return PortReservation(host)


class _ThreadedServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the main thread keeps its own handlers
        pass


@dataclass(frozen=True)
class Served:
    url: str
    _server: uvicorn.Server

    def open_connections(self) -> int:
        """Client connections the server has open now (what its peers have not closed)."""
        return len(self._server.server_state.connections)


@contextlib.contextmanager
def serve_in_thread(
    app: ASGIApp,
    *,
    reservation: PortReservation | None = None,
    name: str = "server",
    options: Mapping[str, Any] | None = None,
) -> Iterator[Served]:
    """uvicorn serving `app` in a daemon thread on the reserved port (a fresh one if none is
    given); yields its base URL and connection count. `options` go to uvicorn.Config, over
    these defaults."""
    reservation = reservation or reserve_port()
    defaults = {"access_log": False, "ws": "none", "timeout_keep_alive": KEEP_ALIVE_SECONDS}
    config = uvicorn.Config(app, **{**defaults, **(options or {})})
    server = _ThreadedServer(config)
    thread = threading.Thread(
        target=server.run,
        kwargs={"sockets": [reservation.socket]},
        name=f"{name}-{reservation.port}",
        daemon=True,
    )
    thread.start()
    try:
        wait_until(
            lambda: server.started or not thread.is_alive(),
            what=f"{name} to start on {reservation.url}",
            timeout=30,
            interval=0.005,
        )
        if not server.started:
            raise RuntimeError(f"{name} on {reservation.url} failed to start (see its log)")
        yield Served(reservation.url, server)
    finally:
        server.should_exit = True
        thread.join(timeout=scaled(10))
        reservation.release()
