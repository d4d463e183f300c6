"""`flinks-bff dev` (what `make run` starts) tells the truth: it names a busy port instead of
starting, prints its banner only once the BFF is ready, and stops when a piece it runs dies."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.ports import reserve_port
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


def _environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BFF_", "FLINKS_", "REDIS"))}
    return {**env, "BFF_LOG_LEVEL": "WARNING", **extra}


def _dev(*args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(  # noqa: S603 - our own command
        [sys.executable, "-m", "app.cli", "dev", *args],
        cwd=ROOT,
        env=_environment(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def listening_socket() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def test_a_busy_sandbox_port_is_named_and_nothing_starts(listening_socket: int) -> None:
    with reserve_port() as bff:
        bff.release()
        process = _dev(SANDBOX_PORT=str(listening_socket), BFF_PORT=str(bff.port))
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2
    assert f"port {listening_socket} (the Flinks sandbox, SANDBOX_PORT) is already in use" in (
        stderr
    )


def test_a_busy_bff_port_is_named(listening_socket: int) -> None:
    process = _dev("--port", str(listening_socket))
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2
    assert f"port {listening_socket} (the BFF, BFF_PORT) is already in use" in stderr


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        found += [int(child) for child in children]
    return found


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def test_the_banner_follows_readiness_and_a_dead_sandbox_stops_it() -> None:
    with reserve_port() as bff, reserve_port() as sandbox:
        bff.release()
        sandbox.release()
        process = _dev(BFF_PORT=str(bff.port), SANDBOX_PORT=str(sandbox.port))
        lines: list[str] = []
        errors: list[str] = []
        readers = [
            threading.Thread(target=sink.extend, args=(pipe,), daemon=True)
            for pipe, sink in ((process.stdout, lines), (process.stderr, errors))
        ]
        for reader in readers:
            reader.start()
        try:
            wait_until(
                lambda: any("is ready" in line for line in lines) or process.poll() is not None,
                what="the dev banner",
                timeout=60,
            )
            assert process.poll() is None, "".join(errors)
            # The banner is only printed once the BFF answers ready.
            assert httpx.get(f"{bff.url}/readyz", timeout=10).status_code == 200
            assert f"Demo     {bff.url}/" in "".join(lines)
            sandboxes = [pid for pid in _children(process.pid) if "app.sandbox" in _cmdline(pid)]
            assert len(sandboxes) == 1
            os.kill(sandboxes[0], signal.SIGKILL)
            process.wait(timeout=60)
            wait_until(lambda: any("stopping the BFF" in line for line in errors), what="why")
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)
            for reader in readers:  # at end of file once the process is gone
                reader.join(timeout=30)
            with process:  # closes the pipes
                pass
    assert process.returncode == 1
    assert "the Flinks sandbox stopped; stopping the BFF too" in "".join(errors)
