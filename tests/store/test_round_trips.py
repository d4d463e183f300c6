"""How many Redis round trips each step of a flow costs, pinned so that a regression fails.

The BFF in process against the sandbox (real HTTP) and a real Redis, with rate limits on. A round
trip is one write of commands to Redis by the BFF's own connections (`client_name` flinks-bff)
that then waits for the answers: one command, one script call or one pipeline. Each is counted
at the connection, before it leaves (redis-py's `send_packed_command`), with the commands it
carried, so a failure shows what was sent. Background work a step starts (the Flinks call under
the flow's lease) is counted with the step: the count ends once the lease is released.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection

from app import ratelimit, store
from app.settings import Settings
from app.store import lease_key
from tests.integration.conftest import ANSWERS, Sandbox, bff_settings
from tests.integration.connect_steps import complete, start, status
from tests.integration.oauth_steps import bank_login, returned
from tests.integration.oauth_steps import start as oauth_start
from tests.waiting import wait_until_async

CLIENT_NAME = "flinks-bff"


class RoundTrips:
    """The round trips the BFF's connections made, each as the command names it carried."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, ...]] = []

    @contextmanager
    def counting(self) -> Iterator[list[tuple[str, ...]]]:
        start_at = len(self.sent)
        counted: list[tuple[str, ...]] = []
        yield counted
        counted.extend(self.sent[start_at:])


def _command_names(packed: Any) -> tuple[str, ...]:
    """The command names in a RESP payload (`*n\\r\\n$len\\r\\nNAME\\r\\n...` per command)."""
    chunks: Iterable[bytes] = (
        [packed]
        if isinstance(packed, bytes)
        else [c.encode() if isinstance(c, str) else c for c in packed]
    )
    data = b"".join(bytes(chunk) for chunk in chunks)
    names = []
    position = 0
    while position < len(data) and data[position : position + 1] == b"*":
        header_end = data.index(b"\r\n", position)
        count = int(data[position + 1 : header_end])
        position = header_end + 2
        for index in range(count):
            length_end = data.index(b"\r\n", position)
            length = int(data[position + 1 : length_end])
            value = data[length_end + 2 : length_end + 2 + length]
            if index == 0:
                names.append(value.decode().upper())
            position = length_end + 2 + length + 2
    return tuple(names)


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> RoundTrips:
    trips = RoundTrips()
    send = AbstractConnection.send_packed_command

    async def counted(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        if self.client_name == CLIENT_NAME:
            trips.sent.append(_command_names(command))
        await send(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
    return trips


@pytest.fixture(autouse=True)
async def _scripts_loaded(redis: Redis) -> None:
    """Every script the BFF runs is on the server already, as it is after its first use there:
    the counts are a step's every time, not the one-off NOSCRIPT and SCRIPT LOAD."""
    scripts = [value for name, value in vars(store).items() if name.endswith("_SCRIPT")]
    for script in [*scripts, ratelimit._HIT]:
        await redis.script_load(script)


@pytest.fixture
def settings(redis_url: str, redis: Redis, sandbox: Sandbox) -> Settings:
    # Rate limits on (high enough never to refuse): their hits are part of a step's cost.
    return bff_settings(redis_url, sandbox, BFF_RATE_LIMIT_IP=1000, BFF_RATE_LIMIT_SESSION=1000)


async def _settled(redis: Redis, flow_id: str) -> None:
    """The background work of a step is over once the flow's lease is released."""

    async def released() -> bool:
        return not await redis.exists(lease_key(flow_id))

    await wait_until_async(released, what="the flow's lease to be released")


async def test_connect_round_trips(
    client: httpx.AsyncClient, sandbox: Sandbox, redis: Redis, round_trips: RoundTrips
) -> None:
    with round_trips.counting() as started_trips:
        started = await start(client)
    flow_id = started["flow_id"]
    login_id = await sandbox.login_via_connect(started["iframe_url"], "greatday_nomfa")
    with round_trips.counting() as completed_trips:
        completed = await complete(client, flow_id, login_id)
        assert completed.status_code == 200, completed.text
        await _settled(redis, flow_id)
    assert completed.json()["status"] == "connected"
    with round_trips.counting() as status_trips:
        assert (await status(client, flow_id))["status"] == "connected"
    # The address's rate counter; the flow; the new browser session.
    assert len(started_trips) == 3, started_trips
    # Session, flow, loginId claim, claim + lease; in the background the link filed (one
    # pipeline: the script for the record, its event, the old data dropped and the new job,
    # app/store.py FILE_LINK_SCRIPT, with the owner's set; the loginId is the one just bound,
    # not read back), the outcome with the lease let go (one script); then "reported" and the
    # session rotated (one pipeline: the old id taken, the new one written).
    assert len(completed_trips) == 8, completed_trips
    assert ("EVALSHA", "SADD", "EXPIRE") in completed_trips, completed_trips
    assert completed_trips[-1] == ("GETDEL", "SET"), completed_trips
    # Session, then flow.
    assert len(status_trips) == 2, status_trips


async def test_oauth_round_trips(
    client: httpx.AsyncClient, sandbox: Sandbox, redis: Redis, round_trips: RoundTrips
) -> None:
    with round_trips.counting() as started_trips:
        started = await oauth_start(client)
    assert started.status_code == 303, started.text
    callback = await bank_login(sandbox.http, started.headers["location"], "Greatday")
    with round_trips.counting() as callback_trips:
        called = await client.get(callback.path_and_query)
        flow_id = returned(called)["flow_id"][0]
        await _settled(redis, flow_id)
    with round_trips.counting() as status_trips:
        flow = await status(client, flow_id)
    assert flow["status"] == "mfa_required"
    prompt = flow["mfa"]["challenges"][0]["prompt"]
    with round_trips.counting() as mfa_trips:
        answered = await client.post(
            f"/v1/flows/{flow_id}/mfa", json={"responses": {prompt: ANSWERS[prompt]}}
        )
        assert answered.status_code == 200, answered.text
        await _settled(redis, flow_id)
    assert answered.json()["status"] == "connected"
    with round_trips.counting() as again_trips:
        assert (await oauth_start(client)).status_code == 303
    # The address's rate counter; the flow and its state (one script); the new session.
    assert len(started_trips) == 3, started_trips
    # Session; the state consumed and the flow read (one script); loginId claim; claim + lease;
    # in the background the outcome (MFA) with the lease let go (one script).
    assert len(callback_trips) == 5, callback_trips
    assert len(status_trips) == 2, status_trips
    # Session, flow, claim + lease; in the background the link filed (2: the loginId read
    # back, as the MFA answer does not carry it, then one pipeline), the outcome with the lease
    # let go; then "reported" and the session rotated (one pipeline).
    assert len(mfa_trips) == 8, mfa_trips
    # A browser with a session: its two rate counters in one pipeline, then the flow. (The
    # session is known: nothing new to keep.)
    assert len(again_trips) == 3, again_trips
    assert again_trips[1] == ("EVALSHA", "EVALSHA"), again_trips


async def test_an_oauth_callback_that_connects_round_trips(
    client: httpx.AsyncClient, sandbox: Sandbox, redis: Redis, round_trips: RoundTrips
) -> None:
    started = await oauth_start(client)
    callback = await bank_login(sandbox.http, started.headers["location"], "greatday_nomfa")
    with round_trips.counting() as callback_trips:
        called = await client.get(callback.path_and_query)
        assert returned(called)["status"] == ["connected"], called.headers
        await _settled(redis, returned(called)["flow_id"][0])
    # Session; the state consumed and the flow read; loginId claim; claim + lease; the link
    # filed (one pipeline: FILE_LINK_SCRIPT with the loginId just bound, the owner's set); the
    # outcome with the lease let go; "reported"; the session rotated (one pipeline).
    assert len(callback_trips) == 8, callback_trips
    assert callback_trips[-1] == ("GETDEL", "SET"), callback_trips
