"""Run the sandbox on a real socket for tests: ``with running_sandbox() as sandbox: ...``.

Reusable by any test suite (the BFF's integration tests included): uvicorn serves the app on
127.0.0.1 and a reserved port (tests/ports.py) in a background thread; the handle gives its
base URL and state.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from starlette.applications import Starlette

from app.sandbox.app import create_sandbox_app
from app.sandbox.config import SandboxSettings
from app.sandbox.state import SandboxState
from tests.ports import Served, reserve_port, serve_in_thread


@dataclass(frozen=True)
class SandboxHandle:
    base_url: str
    app: Starlette
    settings: SandboxSettings
    served: Served

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


@contextlib.contextmanager
def serve_quietly(app: Starlette, host: str = "127.0.0.1") -> Iterator[Served]:
    """Serve an ASGI app without a lifespan in a background thread, logging warnings only."""
    options = {"log_level": "warning", "lifespan": "off", "timeout_graceful_shutdown": 1}
    with serve_in_thread(
        app, reservation=reserve_port(host), name="sandbox", options=options
    ) as served:
        yield served


@contextlib.contextmanager
def running_sandbox(settings: SandboxSettings | None = None) -> Iterator[SandboxHandle]:
    settings = settings or SandboxSettings()
    app = create_sandbox_app(settings)
    with serve_quietly(app) as served:
        yield SandboxHandle(base_url=served.url, app=app, settings=settings, served=served)
