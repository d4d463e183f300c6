"""The BFF on real sockets: in a background thread, or as separate `flinks-bff serve` processes."""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
from starlette.types import ASGIApp

from tests.ports import PortReservation, reserve_port, serve_in_thread
from tests.waiting import wait_until

# Generous: it is there to catch a BFF that never comes up, on a machine that may be running
# two suites at once. The failure says what was awaited and shows the server's output.
READY_TIMEOUT = 120.0


@contextlib.contextmanager
def bff_in_thread(app: ASGIApp, reservation: PortReservation | None = None) -> Iterator[str]:
    """uvicorn with the lifespan on, in a daemon thread; yields the base URL. Give a
    `reservation` when something must know the address before the server exists (an OAuth
    redirect_uri)."""
    with serve_in_thread(
        app, reservation=reservation, name="bff", options={"log_config": None}
    ) as served:
        yield served.url


@dataclass
class BffProcess:
    """One `flinks-bff serve` process: its base URL, the process, and what it printed."""

    url: str
    process: subprocess.Popen[bytes]
    output: IO[bytes]

    def log(self) -> str:
        """What the process printed so far (its last 4,000 characters)."""
        text = Path(self.output.name).read_text(errors="replace")
        return f"--- output of {self.url} ---\n{text[-4000:]}"

    def ready(self, probe: httpx.Client) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"flinks-bff exited with {self.process.returncode}\n{self.log()}")
        with contextlib.suppress(httpx.TransportError):
            return probe.get(f"{self.url}/readyz").status_code == 200
        return False


@contextlib.contextmanager
def bff_processes(env: Mapping[str, str], count: int) -> Iterator[list[str]]:
    """`count` separate `flinks-bff serve` processes sharing the given configuration; their
    base URLs."""
    with bff_servers(env, count) as servers:
        yield [server.url for server in servers]


@contextlib.contextmanager
def bff_servers(env: Mapping[str, str], count: int) -> Iterator[list[BffProcess]]:
    """`count` separate `flinks-bff serve` processes sharing the given configuration.

    Each listens on a port reserved until it is ready; its output goes to a temporary file,
    shown if it fails to start. A test may kill one; the others are stopped at the end."""
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("BFF_", "FLINKS_"))}
    started: list[BffProcess] = []
    with contextlib.ExitStack() as outputs, contextlib.ExitStack() as reservations:
        try:
            for _ in range(count):
                reservation = reservations.enter_context(reserve_port())
                output = outputs.enter_context(tempfile.NamedTemporaryFile(prefix="flinks-bff-"))
                process = subprocess.Popen(  # noqa: S603 - our own command
                    [sys.executable, "-m", "app.cli", "serve", "--port", str(reservation.port)],
                    env={**base_env, "BFF_LOG_LEVEL": "WARNING", **env},
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
                started.append(BffProcess(reservation.url, process, output))
            # One client for every probe: a new one costs more CPU than the starting server
            # can spare on a busy machine.
            probe = outputs.enter_context(httpx.Client(timeout=5))
            for bff in started:
                wait_until(
                    functools.partial(bff.ready, probe),
                    what=f"flinks-bff serve on {bff.url} to answer 200 on /readyz",
                    timeout=READY_TIMEOUT,
                    interval=0.1,
                    detail=bff.log,
                )
            reservations.close()  # each process listens on its port now
            yield started
        finally:
            for bff in started:
                bff.process.terminate()
            for bff in started:
                try:
                    bff.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    bff.process.kill()
                    bff.process.wait()
