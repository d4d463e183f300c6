"""Three `flinks-bff serve` replicas behind HAProxy (round-robin, no stickiness) on a 3-primary
Redis Cluster: what one replica starts another finishes, the OAuth state race stays single-use
across them, the per-IP rate limit sees the real client and holds across them, and a rolling
restart under load fails no request. See tests/topology/load_balancer.py for the harness.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import signal
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from app.sandbox.challenges import CITY_EN
from tests.figures import record
from tests.integration.conftest import ANSWERS, Sandbox
from tests.integration.oauth_steps import RETURN_URL, bank_login, returned, start
from tests.sandbox.server import SandboxHandle
from tests.topology.load_balancer import (
    CLIENT_ADDRESSES,
    LB_SOURCE,
    SERVED_BY,
    LoadBalancer,
    client_transport,
    load_balanced,
    replica_env,
)
from tests.topology.serve import Cluster

pytestmark = pytest.mark.topology

# `make test` runs a few rounds; `make fuzz` (this test is marked fuzz too) runs 200.
RACE_ROUNDS = int(os.environ.get("RACE_ROUNDS", "5"))
RACE_CONCURRENCY = 50
RATE_LIMIT = 6  # two requests per replica
LOAD_WORKERS = 2


def _env(sandbox: SandboxHandle, redis_url: str, **values: str) -> dict[str, str]:
    defaults = {"BFF_RATE_LIMIT_IP": "0", "BFF_RATE_LIMIT_SESSION": "0"}
    return replica_env(
        REDIS_URL=redis_url,
        FLINKS_API_URL=sandbox.base_url,
        FLINKS_CONNECT_URL=f"{sandbox.base_url}/v2/",
        FLINKS_CUSTOMER_ID=sandbox.customer_id,
        FLINKS_SECRET_KEY=sandbox.settings.secret_key,
        FLINKS_DEMO="true",
        BFF_TRUSTED_PROXIES=LB_SOURCE,
        # Shared by every replica: one may seal what another opens.
        BFF_ENCRYPTION_KEY=base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        **{**defaults, **values},
    )


@pytest.fixture(scope="module")
def balancer(cluster: Cluster, sandbox_handle: SandboxHandle) -> Iterator[LoadBalancer]:
    """Three replicas on the cluster, limits off, HAProxy in front."""
    began = time.monotonic()
    with load_balanced(_env(sandbox_handle, cluster.url)) as balancer:
        record(
            "load balancer start", f"3 replicas + haproxy up in {time.monotonic() - began:.1f} s"
        )
        yield balancer


@pytest.fixture
async def browser(balancer: LoadBalancer) -> AsyncIterator[httpx.AsyncClient]:
    """One cookie jar, connecting to HAProxy from a client address of its own."""
    transport = client_transport(CLIENT_ADDRESSES[0], max_connections=RACE_CONCURRENCY)
    async with httpx.AsyncClient(base_url=balancer.url, transport=transport, timeout=30) as client:
        yield client


def _served_by(response: httpx.Response) -> str:
    served: str = response.headers[SERVED_BY]
    return served


async def test_one_oauth_flow_starts_calls_back_and_answers_mfa_on_three_replicas(
    browser: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    started = await start(browser)
    assert started.status_code == 303, started.text
    callback = await bank_login(sandbox.http, started.headers["location"], "Greatday")
    called_back = await browser.get(callback.path_and_query)
    query = returned(called_back)
    assert query["status"] == ["mfa_required"]
    flow_id = query["flow_id"][0]
    # The sandbox asks Greatday's questions in a fixed order: the first one is known, so the
    # answer is the very next request (a status read in between would take the third replica).
    answered = await browser.post(
        f"/v1/flows/{flow_id}/mfa", json={"responses": {CITY_EN: ANSWERS[CITY_EN]}}
    )
    assert answered.status_code == 200, answered.text
    assert answered.json()["status"] == "connected"

    steps = {"start": started, "callback": called_back, "mfa": answered}
    served = {step: _served_by(response) for step, response in steps.items()}
    assert len(set(served.values())) == 3, served
    read = await browser.get(f"/v1/flows/{flow_id}")
    assert read.json()["status"] == "connected"
    assert len(await sandbox.authorize_calls()) == 2  # the callback's, then the MFA answer's
    record("load balancer flow", ", ".join(f"{step} by {name}" for step, name in served.items()))


@dataclass
class _Round:
    successes: int
    refused: int
    authorize_calls: int
    served_by: Counter[str]


async def _race_round(browser: httpx.AsyncClient, sandbox: Sandbox) -> _Round:
    before = len(await sandbox.authorize_calls())
    started = await start(browser)
    assert started.status_code == 303, started.text
    callback = await bank_login(sandbox.http, started.headers["location"], "greatday_nomfa")
    responses = await asyncio.gather(
        *(browser.get(callback.path_and_query) for _ in range(RACE_CONCURRENCY))
    )
    successes = refused = 0
    for response in responses:
        assert response.status_code in (303, 403), (response.status_code, response.text)
        if response.status_code == 303:
            location = parse_qs(urlsplit(response.headers["location"]).query)
            successes += location["status"] == ["connected"]
        else:
            refused += response.json()["code"] == "state_invalid"
    calls = len(await sandbox.authorize_calls()) - before
    return _Round(successes, refused, calls, Counter(map(_served_by, responses)))


@pytest.mark.fuzz
@pytest.mark.timeout(120 + 2 * RACE_ROUNDS)  # 200 rounds take ~85 s on a busy 2-core machine
async def test_the_state_race_through_the_load_balancer_succeeds_once_per_round(
    browser: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    # One browser (one cookie jar) for every round: the same sandbox user's loginId comes back
    # each time, and a loginId belongs to its first owner (another owner's round is 409).
    began = time.monotonic()
    rounds = [await _race_round(browser, sandbox) for _ in range(RACE_ROUNDS)]
    seconds = time.monotonic() - began
    duplicates = sum(max(0, r.successes - 1) for r in rounds)
    served = sum((r.served_by for r in rounds), Counter[str]())
    record(
        "race through the load balancer",
        f"{RACE_ROUNDS} rounds x {RACE_CONCURRENCY} concurrent callbacks through haproxy to 3 "
        f"replicas on a 3-primary, 3-replica cluster: duplicate successes = {duplicates}, "
        f"/Authorize per round = {sorted({r.authorize_calls for r in rounds})}, "
        f"served by {dict(served)}, {seconds:.1f} s",
    )
    assert duplicates == 0
    assert all(r.successes == 1 for r in rounds), rounds
    assert all(r.refused == RACE_CONCURRENCY - 1 for r in rounds), rounds
    assert all(r.authorize_calls == 1 for r in rounds), rounds
    assert all(len(r.served_by) == 3 for r in rounds), rounds


async def _start_from(
    balancer: LoadBalancer, address: str, forwarded_for: str | None = None
) -> httpx.Response:
    """One flow start (rate limited per IP) from a client at `address`, optionally claiming
    another address in its own X-Forwarded-For."""
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    transport = client_transport(address)
    async with httpx.AsyncClient(base_url=balancer.url, transport=transport, timeout=30) as client:
        return await client.get(
            "/v1/oauth/start",
            params={"institution": "FlinksCapital", "return_url": RETURN_URL},
            headers=headers,
        )


async def test_the_per_ip_limit_sees_the_real_client_and_holds_across_replicas(
    cluster: Cluster, sandbox_handle: SandboxHandle
) -> None:
    env = _env(sandbox_handle, cluster.url, BFF_RATE_LIMIT_IP=str(RATE_LIMIT))
    client, other = CLIENT_ADDRESSES
    with load_balanced(env) as balancer:
        allowed = [await _start_from(balancer, client) for _ in range(RATE_LIMIT)]
        assert [r.status_code for r in allowed] == [303] * RATE_LIMIT
        spread = Counter(map(_served_by, allowed))
        assert len(spread) == 3, spread  # the one count is shared by every replica

        # HAProxy drops the client's own X-Forwarded-For: a made-up address buys no new count.
        forged = await _start_from(balancer, client, forwarded_for="198.51.100.7")
        assert (forged.status_code, forged.json()["code"]) == (429, "rate_limited")
        # Nor does claiming to be the limited client limit someone else: the peer HAProxy saw
        # is what counts.
        framed = await _start_from(balancer, other, forwarded_for=client)
        assert framed.status_code == 303, framed.text
        # Without a header, the limited client stays limited on every replica.
        after = [await _start_from(balancer, client) for _ in range(3)]
        assert [r.status_code for r in after] == [429] * 3
        assert len(Counter(map(_served_by, after))) == 3
    record(
        "rate limit through the load balancer",
        f"limit {RATE_LIMIT} per IP: {RATE_LIMIT} allowed over {dict(spread)}, then 429 on "
        "every replica, a forged X-Forwarded-For not believed",
    )


@dataclass
class _Load:
    """Requests a load loop sent, and every one that failed (non-2xx/3xx or no answer)."""

    total: int = 0
    failures: list[str] = field(default_factory=list)
    served_by: Counter[str] = field(default_factory=Counter)

    def count(self, response: httpx.Response | None, what: str, error: str = "") -> None:
        self.total += 1
        if response is None or response.status_code >= 400:
            detail = error or f"{response.status_code if response else '-'}"
            self.failures.append(f"{what}: {detail}")
        if response is not None and SERVED_BY in response.headers:
            self.served_by[_served_by(response)] += 1


async def _load_loop(balancer: LoadBalancer, load: _Load, done: threading.Event) -> None:
    """Flow starts and status reads, one after the other, until `done`."""
    transport = client_transport(CLIENT_ADDRESSES[1])
    async with httpx.AsyncClient(base_url=balancer.url, transport=transport, timeout=30) as client:
        while not done.is_set():
            try:
                created = await client.post(
                    "/v1/oauth/sessions",
                    json={"institution": "FlinksCapital", "return_url": RETURN_URL},
                )
            except httpx.TransportError as exc:
                load.count(None, "start", repr(exc))
                continue
            load.count(created, "start")
            if created.status_code != 201:
                continue
            try:
                read = await client.get(f"/v1/flows/{created.json()['flow_id']}")
            except httpx.TransportError as exc:
                load.count(None, "read", repr(exc))
                continue
            load.count(read, "read")


def _roll(balancer: LoadBalancer, load: _Load) -> list[str]:
    """Each replica in turn: SIGTERM, exit, start, UP in HAProxy; what happened, per replica,
    and how many requests HAProxy retried and sent to another replica."""
    steps = []
    with httpx.Client(timeout=5) as probe:
        for replica in balancer.replicas:
            before = load.total
            restart = balancer.restart(replica, probe)
            # uvicorn re-raises the SIGTERM it handled once it has shut down cleanly.
            assert restart.exit_code in (0, -signal.SIGTERM), replica.log()
            steps.append(f"{restart}, {load.total - before} requests meanwhile")
        backend = balancer.stats(probe)["BACKEND"]
    steps.append(f"haproxy retries {backend['wretr']}, redispatches {backend['wredis']}")
    return steps


async def test_a_rolling_restart_under_load_fails_no_request(balancer: LoadBalancer) -> None:
    load = _Load()
    done = threading.Event()
    loops = [asyncio.create_task(_load_loop(balancer, load, done)) for _ in range(LOAD_WORKERS)]
    began = time.monotonic()
    try:
        steps = await asyncio.to_thread(_roll, balancer, load)
    finally:
        done.set()
        await asyncio.gather(*loops)
    seconds = time.monotonic() - began
    record(
        "rolling restart",
        f"{load.total} requests through haproxy while 3 replicas restarted one by one "
        f"({seconds:.1f} s), failed = {len(load.failures)}; " + "; ".join(steps),
    )
    assert load.failures == [], load.failures[:20]
    assert load.total >= 10 * len(balancer.replicas), load.total
    assert len(load.served_by) == 3, load.served_by
