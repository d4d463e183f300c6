"""`flinks-bff dev` (what `make run` starts) tells the truth: it names a busy port instead of
starting, prints its banner only once the BFF is ready, and stops when a piece it runs dies."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.dev_stack import ROOT, dev_environment, dev_stack
from tests.ports import reserve_port
from tests.waiting import wait_until


def _dev(*args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(  # noqa: S603 - our own command
        [sys.executable, "-m", "app.cli", "dev", *args],
        cwd=ROOT,
        env=dev_environment(**env),
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


def _webhooks_reach_the_bff(bff: str, sandbox: str) -> None:
    """`flinks-bff dev` wires the sandbox's webhooks to the BFF, signed with one secret: a
    delivery the sandbox makes is answered 200 (signature verified) and processed."""
    login = httpx.post(f"{sandbox}/__sandbox/logins", json={"username": "greatday_nomfa"})
    login_id = login.json()["login_id"]
    sent = httpx.post(f"{sandbox}/__sandbox/webhooks/deliver", json={"login_id": login_id})
    assert sent.status_code == 202, sent.text

    def delivered() -> bool:
        listing = httpx.get(f"{sandbox}/__sandbox/webhooks", timeout=10).json()
        entries = listing["deliveries"] if isinstance(listing, dict) else listing
        return bool(entries) and all(200 in entry["statuses"] for entry in entries)

    wait_until(delivered, what="the sandbox's webhooks to be answered 200 by the BFF")

    def processed() -> bool:
        metrics = httpx.get(f"{bff}/metrics", timeout=10).text
        return "flinks_webhooks_processed_total{" in metrics

    wait_until(processed, what="the BFF to process the delivery")


def test_the_banner_follows_readiness_and_a_dead_sandbox_stops_it() -> None:
    with dev_stack() as stack:
        stack.wait_ready()
        # The banner is only printed once the BFF answers ready.
        assert httpx.get(f"{stack.bff_url}/readyz", timeout=10).status_code == 200
        assert f"Demo     {stack.bff_url}/" in "".join(stack.out)
        _webhooks_reach_the_bff(stack.bff_url, stack.sandbox_url)
        pid = stack.process.pid
        sandboxes = [child for child in _children(pid) if "app.sandbox" in _cmdline(child)]
        assert len(sandboxes) == 1
        os.kill(sandboxes[0], signal.SIGKILL)
        stack.process.wait(timeout=60)
        wait_until(lambda: any("stopping the BFF" in line for line in stack.err), what="why")
    assert stack.process.returncode == 1
    assert "the Flinks sandbox stopped; stopping the BFF too" in "".join(stack.err)
