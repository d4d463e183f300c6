"""Run the sandbox on a real socket for tests: ``with running_sandbox() as sandbox: ...``.

Reusable by any test suite (the BFF's integration tests included): uvicorn serves the app on
127.0.0.1 and a free port in a background thread; the handle gives its base URL and state.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette

from app.sandbox.app import create_sandbox_app
from app.sandbox.config import SandboxSettings
from app.sandbox.state import SandboxState


@dataclass(frozen=True)
class SandboxHandle:
    base_url: str
    app: Starlette
    settings: SandboxSettings

    @property
    def app_state(self) -> SandboxState:
        """The live state. Read it between requests only: the server thread owns it."""
        state: SandboxState = self.app.state.sandbox
        return state

    @property
    def customer_id(self) -> str:
        return self.settings.customer_ids[0]

    @property
    def api_url(self) -> str:
        """``{base_url}/v3/{customerId}/BankingServices``."""
        return f"{self.base_url}/v3/{self.customer_id}/BankingServices"


class _ThreadedServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the main thread keeps its own handlers
        pass


def _serve(app: Starlette, host: str) -> tuple[_ThreadedServer, threading.Thread, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port: int = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        ws="none",
        lifespan="off",
        timeout_graceful_shutdown=1,
    )
    server = _ThreadedServer(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"sandbox-{port}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the sandbox server did not start")
        time.sleep(0.005)
    return server, thread, port


@contextlib.contextmanager
def running_app(app: Starlette, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve any ASGI app in a background thread; yields its base URL."""
    server, thread, port = _serve(app, host)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextlib.contextmanager
def running_sandbox(settings: SandboxSettings | None = None) -> Iterator[SandboxHandle]:
    settings = settings or SandboxSettings()
    app = create_sandbox_app(settings)
    with running_app(app) as base_url:
        yield SandboxHandle(base_url=base_url, app=app, settings=settings)
