"""`flinks-bff dev` (what `make run` starts) as a real process, with its output collected."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.ports import reserve_port
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]


def dev_environment(**extra: str) -> dict[str, str]:
    """This machine's environment without any BFF, Flinks or Redis setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BFF_", "FLINKS_", "REDIS"))}
    return {**env, "BFF_LOG_LEVEL": "WARNING", **extra}


@dataclass
class DevStack:
    process: subprocess.Popen[str]
    bff_url: str
    sandbox_url: str
    receiver_url: str
    out: list[str] = field(default_factory=list)
    err: list[str] = field(default_factory=list)

    def wait_ready(self) -> None:
        wait_until(
            lambda: any("is ready" in line for line in self.out) or self.process.poll() is not None,
            what="the dev banner",
            timeout=60,
        )
        assert self.process.poll() is None, "".join(self.err)


@contextmanager
def dev_stack() -> Iterator[DevStack]:
    """`flinks-bff dev` on three reserved ports (BFF_PORT, SANDBOX_PORT, RECEIVER_PORT), stopped
    on exit."""
    with reserve_port() as bff, reserve_port() as sandbox, reserve_port() as receiver:
        bff.release()
        sandbox.release()
        receiver.release()
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "dev"],
            cwd=ROOT,
            env=dev_environment(
                BFF_PORT=str(bff.port),
                SANDBOX_PORT=str(sandbox.port),
                RECEIVER_PORT=str(receiver.port),
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        stack = DevStack(process, bff.url, sandbox.url, receiver.url)
        readers = [
            threading.Thread(target=sink.extend, args=(pipe,), daemon=True)
            for pipe, sink in ((process.stdout, stack.out), (process.stderr, stack.err))
        ]
        for reader in readers:
            reader.start()
        try:
            yield stack
        finally:
            if process.poll() is None:
                process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
            for reader in readers:  # at end of file once the process is gone
                reader.join(timeout=30)
            with process:  # closes the pipes
                pass
