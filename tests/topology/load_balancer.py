"""Three `flinks-bff serve` replicas behind a real HAProxy (Debian's `haproxy`), as the tests start
them: what a deployment past one machine looks like, on one machine.

HAProxy balances every request round-robin with no stickiness, so one browser's consecutive
requests land on different replicas; it names the replica that answered in `X-Served-By`. It
is the edge: it drops any X-Forwarded-For the client sent and sets its own from the peer it saw
(`option forwardfor` alone appends a second header line, and a reader of the first line would
believe the client's). It connects to the replicas from LB_SOURCE, the one address the
replicas trust (BFF_TRUSTED_PROXIES), while clients connect from addresses of their own
(CLIENT_ADDRESSES): on loopback the whole of 127.0.0.0/8 is local, so the three parties have
three addresses without any network setup.

Health checks read /readyz; a replica stopping (SIGTERM) refuses connections at once, and a
request that found it refusing, or closing without an answer, is retried on another replica
(`retry-on`, `option redispatch`). The server side of each connection is closed after its
response (`http-server-close`): no idle connection to a replica is ever reused as it stops.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.integration.servers import READY_TIMEOUT
from tests.ports import HOST, KEEP_ALIVE_SECONDS, reserve_port
from tests.waiting import scaled, wait_until

# The address HAProxy connects to the replicas from: what BFF_TRUSTED_PROXIES names.
LB_SOURCE = "127.0.0.3"
# Addresses test clients connect to HAProxy from (httpx's `local_address`): real clients.
CLIENT_ADDRESSES = ("127.0.0.5", "127.0.0.6")
SERVED_BY = "x-served-by"
STOP_TIMEOUT = 30.0
INSTALL_HINT = (
    "HAProxy is not installed, and the load-balancer tests need it: "
    "`apt-get install -y haproxy` (Debian; .ci/run installs it when missing)"
)


def haproxy_binary() -> str:
    """The `haproxy` command; fails the test (never skips it) when it is missing."""
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    return found


@contextlib.contextmanager
def _holding(port: int) -> Iterator[None]:
    """Keeps `port` bound (SO_REUSEADDR, not listening) while a process is started on it, as
    tests/ports.py does for a fresh port: nothing else is handed the port meanwhile."""
    held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        held.bind((HOST, port))
        yield
    finally:
        held.close()


@dataclass
class Replica:
    """One `flinks-bff serve` process on a fixed port, which a test may stop and start again.
    Everything it prints, over all its runs, goes to its own file."""

    name: str
    port: int
    env: Mapping[str, str]
    output: Path
    process: subprocess.Popen[bytes] | None = None
    exit_codes: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def log(self) -> str:
        text = self.output.read_text(errors="replace") if self.output.exists() else ""
        return f"--- output of {self.name} ({self.url}) ---\n{text[-4000:]}"

    def spawn(self) -> None:
        with self.output.open("ab") as output:
            self.process = subprocess.Popen(  # noqa: S603 - our own command
                [sys.executable, "-m", "app.cli", "serve", "--port", str(self.port)],
                env=dict(self.env),
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def ready(self, probe: httpx.Client) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}\n{self.log()}")
        with contextlib.suppress(httpx.TransportError):
            return probe.get(f"{self.url}/readyz").status_code == 200
        return False

    def wait_ready(self, probe: httpx.Client) -> None:
        wait_until(
            functools.partial(self.ready, probe),
            what=f"{self.name} on {self.url} to answer 200 on /readyz",
            timeout=READY_TIMEOUT,
            interval=0.1,
            detail=self.log,
        )

    def start(self, probe: httpx.Client) -> None:
        """Starts the process on its port and returns once it is ready."""
        with _holding(self.port):
            self.spawn()
            self.wait_ready(probe)

    def stop(self) -> int:
        """SIGTERM, as an orchestrator stops it; returns its exit code once it has exited."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=scaled(STOP_TIMEOUT))
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"{self.name} did not exit on SIGTERM\n{self.log()}") from None
        self.exit_codes.append(code)
        return code

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def haproxy_config(*, port: int, stats_port: int, replicas: list[Replica]) -> str:
    """The configuration: round-robin, no stickiness, forwardfor, /readyz checks, retries."""
    servers = "\n".join(
        f"    server {r.name} {HOST}:{r.port} check inter 300ms fall 2 rise 2" for r in replicas
    )
    return f"""\
global
    maxconn 2000

defaults
    mode http
    timeout connect 2s
    timeout client {KEEP_ALIVE_SECONDS}s
    timeout http-keep-alive {KEEP_ALIVE_SECONDS}s
    timeout server 60s
    timeout check 5s
    # Each request balanced on its own, on a server connection used for it alone.
    option http-server-close
    # A replica refusing (stopping) or closing without an answer: the request goes to another.
    # A request is retried only while HAProxy still has all of it: buffer each body whole
    # (else a POST whose replica reset the connection mid-send ends as a 502).
    option http-buffer-request
    retries 3
    retry-on conn-failure empty-response junk-response
    option redispatch 1

frontend bff
    bind {HOST}:{port}
    # The edge: nothing in front of it is trusted, so the client's own header goes.
    http-request del-header X-Forwarded-For
    option forwardfor
    default_backend replicas

backend replicas
    balance roundrobin
    source {LB_SOURCE}
    option httpchk GET /readyz
    http-check expect status 200
    http-response set-header X-Served-By %s
{servers}

listen stats
    bind {HOST}:{stats_port}
    stats enable
    stats uri /stats
"""


@dataclass
class LoadBalancer:
    """HAProxy in front of the replicas: `url` is where clients go."""

    url: str
    stats_url: str
    replicas: list[Replica]
    process: subprocess.Popen[bytes]
    output: Path

    def log(self) -> str:
        return f"--- output of haproxy ---\n{self.output.read_text(errors='replace')[-4000:]}"

    def stats(self, probe: httpx.Client) -> dict[str, dict[str, str]]:
        """HAProxy's statistics for the backend and each replica, by name (`BACKEND`, `bff1`...):
        `status` (UP, DOWN, `UP 1/2`...), `wretr` (retries), `wredis` (redispatches)..."""
        if self.process.poll() is not None:
            raise RuntimeError(f"haproxy exited with {self.process.returncode}\n{self.log()}")
        with contextlib.suppress(httpx.TransportError):
            response = probe.get(f"{self.stats_url};csv")
            if response.status_code == 200:
                rows = csv.DictReader(io.StringIO(response.text.removeprefix("# ")))
                return {row["svname"]: row for row in rows if row["pxname"] == "replicas"}
        return {}

    def states(self, probe: httpx.Client) -> dict[str, str]:
        """Each replica's status as HAProxy sees it."""
        return {name: row["status"] for name, row in self.stats(probe).items()}

    def wait_until_up(self, probe: httpx.Client, *names: str) -> None:
        """Until HAProxy's health checks have marked each named replica UP."""

        def up() -> bool:
            states = self.states(probe)
            return all(states.get(name) == "UP" for name in names)

        wait_until(
            up,
            what=f"haproxy to see {', '.join(names)} UP",
            timeout=READY_TIMEOUT,
            interval=0.05,
            detail=lambda: f"states: {self.states(probe)}\n{self.log()}",
        )

    def restart(self, replica: Replica, probe: httpx.Client) -> Restart:
        """Stops `replica` with SIGTERM, waits for it to exit, starts it again and waits until
        HAProxy sees it UP."""
        began = time.monotonic()
        code = replica.stop()
        stopped = time.monotonic()
        replica.start(probe)
        ready = time.monotonic()
        self.wait_until_up(probe, replica.name)
        up = time.monotonic()
        return Restart(replica.name, code, stopped - began, ready - stopped, up - ready)


@dataclass(frozen=True)
class Restart:
    """One replica's restart: its exit code, and the seconds from SIGTERM to exit, from exit
    to ready, and from ready to UP in HAProxy."""

    name: str
    exit_code: int
    to_exit: float
    to_ready: float
    to_up: float

    def __str__(self) -> str:
        return (
            f"{self.name}: exit {self.exit_code} in {self.to_exit:.1f} s, ready in "
            f"{self.to_ready:.1f} s, UP in haproxy {self.to_up:.1f} s later"
        )


def replica_env(**values: str) -> dict[str, str]:
    """This environment without any BFF_/FLINKS_ setting of its own, plus `values`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("BFF_", "FLINKS_"))}
    return {**base, "BFF_LOG_LEVEL": "WARNING", "BFF_WORKERS": "1", **values}


@contextlib.contextmanager
def load_balanced(env: Mapping[str, str], count: int = 3) -> Iterator[LoadBalancer]:
    """`count` replicas sharing `env` (see replica_env), HAProxy in front; everything is
    stopped at the end (the replicas with SIGTERM, HAProxy with its soft stop)."""
    binary = haproxy_binary()
    with (
        tempfile.TemporaryDirectory(prefix="flinks-bff-lb-") as directory,
        httpx.Client(timeout=5) as probe,
    ):
        folder = Path(directory)
        replicas: list[Replica] = []
        try:
            with contextlib.ExitStack() as reservations:
                for index in range(1, count + 1):
                    reservation = reservations.enter_context(reserve_port())
                    replica = Replica(
                        f"bff{index}", reservation.port, env, folder / f"bff{index}.log"
                    )
                    replicas.append(replica)
                    # SO_REUSEADDR: it binds while the reservation still holds the port.
                    replica.spawn()
                for replica in replicas:
                    replica.wait_ready(probe)
            with _haproxy(binary, folder, replicas, probe) as balancer:
                yield balancer
        finally:
            for replica in replicas:
                if replica.process is not None and replica.process.poll() is None:
                    replica.process.send_signal(signal.SIGTERM)
            for replica in replicas:
                if replica.process is not None:
                    try:
                        replica.process.wait(timeout=scaled(STOP_TIMEOUT))
                    except subprocess.TimeoutExpired:
                        replica.kill()


@contextlib.contextmanager
def _haproxy(
    binary: str, folder: Path, replicas: list[Replica], probe: httpx.Client
) -> Iterator[LoadBalancer]:
    """HAProxy with a generated configuration on reserved ports, until every replica is UP;
    stopped at the end with its soft stop (SIGUSR1: what is in flight finishes)."""
    with reserve_port() as front, reserve_port() as stats:
        config = folder / "haproxy.cfg"
        config.write_text(haproxy_config(port=front.port, stats_port=stats.port, replicas=replicas))
        output = folder / "haproxy.log"
        with output.open("wb") as out:
            # -db: in the foreground, not daemonized; HAProxy binds with SO_REUSEADDR.
            process = subprocess.Popen(  # noqa: S603 - a fixed command
                [binary, "-db", "-f", str(config)], stdout=out, stderr=subprocess.STDOUT
            )
        balancer = LoadBalancer(front.url, f"{stats.url}/stats", replicas, process, output)
        try:
            balancer.wait_until_up(probe, *(r.name for r in replicas))
        except BaseException:
            process.kill()
            process.wait()
            raise
    try:
        yield balancer
    finally:
        process.send_signal(signal.SIGUSR1)
        try:
            process.wait(timeout=scaled(10))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def client_transport(address: str, **limits: int) -> httpx.AsyncHTTPTransport:
    """A transport whose connections come from `address` (one of CLIENT_ADDRESSES)."""
    return httpx.AsyncHTTPTransport(local_address=address, limits=httpx.Limits(**limits))
