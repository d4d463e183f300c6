"""The BFF on real sockets: in a background thread, or as separate `flinks-bff serve` processes."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping

import httpx
import uvicorn
from starlette.types import ASGIApp


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _ThreadedServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:
        pass


@contextlib.contextmanager
def bff_in_thread(app: ASGIApp, port: int | None = None) -> Iterator[str]:
    """uvicorn with the lifespan on, in a daemon thread; yields the base URL. Give `port`
    when something must know the address before the server exists (an OAuth redirect_uri)."""
    port = port or free_port()
    server = _ThreadedServer(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_config=None, access_log=False, ws="none"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the BFF did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _wait_ready(base_url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"flinks-bff exited with {process.returncode}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError("flinks-bff did not become ready")


@contextlib.contextmanager
def bff_processes(env: Mapping[str, str], count: int) -> Iterator[list[str]]:
    """`count` separate `flinks-bff serve` processes sharing the given configuration."""
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("BFF_", "FLINKS_"))}
    processes: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    try:
        for _ in range(count):
            port = free_port()
            process = subprocess.Popen(  # noqa: S603 - our own command
                [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
                env={**base_env, "BFF_LOG_LEVEL": "WARNING", **env},
                stdout=subprocess.DEVNULL,
            )
            processes.append(process)
            urls.append(f"http://127.0.0.1:{port}")
        for url, process in zip(urls, processes, strict=True):
            _wait_ready(url, process)
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
