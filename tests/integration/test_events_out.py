"""The BFF's events out to the host backend, end to end: real flows against the sandbox, a real
Redis (outboxes, the delivery stream and its consumer group), and a real HTTP receiver that
verifies every signature with the Standard Webhooks reference library."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

import app.main
from app.flows.events import DeliveryMetrics, DeliveryPolicy, EventDelivery, Events
from app.flows.records import LinkRecord
from app.main import create_app
from app.outbound import Attempt
from app.settings import Settings
from app.store import EVENT_DEAD_KEY, EVENTS_GROUP, EVENTS_KEY, EventQueue, link_key, outbox_key
from tests.clock import FakeClock
from tests.conftest import make_settings, metric_sum, serve_in_process
from tests.integration.conftest import Sandbox, bff_settings
from tests.integration.connect_steps import complete, start
from tests.integration.event_receiver import SECRET, Receiver, receiving, reserved_url
from tests.integration.link_steps import (
    CONNECTING_USERS,
    accounts_when_ready,
    connect,
    short_poll_gap,
)
from tests.waiting import WaitTimeout, wait_until_async

FAST: dict[str, Any] = {
    "backoff_base": timedelta(milliseconds=20),
    "backoff_cap": timedelta(milliseconds=200),
    "sweep_every": timedelta(milliseconds=200),
    "block": timedelta(milliseconds=200),
    "retry_pause": timedelta(milliseconds=50),
}

ATTEMPTS = "bff_webhooks_attempts_total"
DEAD_LETTERED = "bff_webhooks_dead_lettered_total"


def fast_delivery(monkeypatch: pytest.MonkeyPatch, **changes: Any) -> None:
    """Apps created after this retry within milliseconds and sweep outboxes often."""
    original: Callable[[Settings], DeliveryPolicy] = app.main._delivery_policy

    def patched(settings: Settings) -> DeliveryPolicy:
        return replace(original(settings), **{**FAST, **changes})

    monkeypatch.setattr(app.main, "_delivery_policy", patched)


def events_settings(redis_url: str, sandbox: Sandbox, url: str, **overrides: object) -> Settings:
    return bff_settings(
        redis_url, sandbox, BFF_WEBHOOK_URL=url, BFF_WEBHOOK_SECRET=SECRET, **overrides
    )


async def received(receiver: Receiver, count: int, what: str) -> list[Any]:
    async def enough() -> bool:
        return len(receiver.delivered()) >= count

    try:
        await wait_until_async(enough, what=what)
    except WaitTimeout as exc:
        raise WaitTimeout(f"{exc}; received {receiver.types()}") from None
    return receiver.delivered()


async def drained(redis: Redis) -> None:
    """Every event finished: nothing queued, waiting, pending or left in an outbox."""
    queue = EventQueue(redis)

    async def empty() -> bool:
        pending = await redis.xpending(EVENTS_KEY, EVENTS_GROUP)
        return await queue.counts() == (0, 0, 0) and not pending["pending"]

    await wait_until_async(empty, what="every event delivered and acknowledged")


# -- what the host backend hears ---------------------------------------------------------------


async def test_a_link_connected_read_and_deleted_tells_the_host_in_order_signed(
    redis_url: str,
    redis: Redis,
    sandbox: Sandbox,
    receiver: Receiver,
    receiver_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fast_delivery(monkeypatch)
    short_poll_gap(monkeypatch)
    bff = create_app(events_settings(redis_url, sandbox, receiver_url))
    async with serve_in_process(bff) as client:
        linked = await connect(client, sandbox)
        await accounts_when_ready(client, linked.link_id)
        assert (await client.delete(f"/v1/links/{linked.link_id}")).status_code == 204
        deliveries = await received(receiver, 3, "three events")
        assert [d.type for d in deliveries] == ["link.connected", "accounts.ready", "link.deleted"]
        owner = json.loads(str(await redis.get(link_key(linked.link_id))))["owner"]
        for delivery in deliveries:
            assert delivery.verified, "the standardwebhooks library did not verify it"
            assert delivery.event_id.startswith("msg_")
            assert delivery.headers["webhook-signature"].startswith("v1,")
            assert set(delivery.body) == {"type", "timestamp", "data"}
            data = delivery.body["data"]
            assert (data["link_id"], data["owner"], data["institution"]) == (
                linked.link_id,
                owner,
                "FlinksCapital",
            )
            assert linked.login_id not in json.dumps(delivery.body)
            assert linked.login_id not in json.dumps(delivery.headers)
        connected, ready, _ = deliveries
        assert connected.body["data"]["flow_id"] == linked.flow_id
        assert ready.body["data"]["accounts"] >= 1
        assert len({d.event_id for d in deliveries}) == 3
        await drained(redis)
        assert await metric_sum(client, ATTEMPTS, outcome="delivered") == 3
        # Nothing left behind: every outbox relayed and emptied, the stream drained.
        assert await redis.exists(outbox_key(linked.link_id)) == 0


async def test_a_failed_flow_tells_the_host_link_failed(
    redis_url: str,
    sandbox: Sandbox,
    receiver: Receiver,
    receiver_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fast_delivery(monkeypatch)
    bff = create_app(events_settings(redis_url, sandbox, receiver_url))
    async with serve_in_process(bff) as client:
        started = await start(client, tag="order-42")
        login_id = await sandbox.issue_login("test_disabled_account")
        response = await complete(client, started["flow_id"], login_id)
        assert response.json()["status"] == "failed"
        (failed,) = await received(receiver, 1, "link.failed")
        assert failed.verified
        assert failed.type == "link.failed"
        data = failed.body["data"]
        assert data["flow_id"] == started["flow_id"]
        assert data["link_id"] is None
        assert data["tag"] == "order-42"
        assert data["error"]["code"] == "disabled_login"
        assert login_id not in json.dumps(failed.body)


async def test_without_a_webhook_url_no_event_is_written(
    redis_url: str, redis: Redis, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    bff = create_app(bff_settings(redis_url, sandbox))
    async with serve_in_process(bff) as client:
        linked = await connect(client, sandbox)
        assert await redis.exists(outbox_key(linked.link_id)) == 0
        assert await redis.exists(outbox_key(linked.flow_id)) == 0


# -- at least once -------------------------------------------------------------------------------


async def test_a_receiver_down_then_failing_then_up_gets_every_event_in_order_with_stable_ids(
    redis_url: str, redis: Redis, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast_delivery(monkeypatch)
    short_poll_gap(monkeypatch)
    reservation, url = reserved_url()  # nobody listens yet: every attempt is refused
    receiver = Receiver()
    # Outside the app: the receiver stops after the app does, never under a delivery.
    with reservation, contextlib.ExitStack() as receiver_up:
        bff = create_app(events_settings(redis_url, sandbox, url))
        async with serve_in_process(bff) as client:
            links = [await connect(client, sandbox, user) for user in CONNECTING_USERS[:3]]
            for linked in links:
                await accounts_when_ready(client, linked.link_id)
            assert (await client.delete(f"/v1/links/{links[0].link_id}")).status_code == 204

            async def refused() -> bool:
                return await metric_sum(client, ATTEMPTS, outcome="failed") >= 3

            await wait_until_async(refused, what="attempts while the receiver is down")
            receiver.fail_next = 4  # then up, answering 500 a few times
            receiver_up.enter_context(receiving(receiver, reservation))
            deliveries = await received(receiver, 7, "every event once the receiver is up")
            await drained(redis)
        for linked in links:
            mine = [d.type for d in deliveries if d.link_id == linked.link_id]
            expected = ["link.connected", "accounts.ready"]
            if linked is links[0]:
                expected.append("link.deleted")
            assert mine == expected, linked
        assert len(receiver.delivered()) == 7
        assert all(d.verified for d in receiver.deliveries)
        # The 500s were retried under the same ids: more requests than events.
        assert len(receiver.deliveries) == 7 + 4
        assert len({d.event_id for d in receiver.deliveries}) == 7


async def test_a_receiver_failing_for_ever_dead_letters_the_event_after_the_max_age(
    redis_url: str,
    redis: Redis,
    sandbox: Sandbox,
    receiver: Receiver,
    receiver_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fast_delivery(monkeypatch, backoff_base=timedelta(seconds=2), backoff_cap=timedelta(hours=1))
    receiver.status = 500
    clock = FakeClock()
    bff = create_app(events_settings(redis_url, sandbox, receiver_url), clock=clock)
    async with serve_in_process(bff) as client:
        linked = await connect(client, sandbox)
        await received(receiver, 1, "the first attempt")
        queue = EventQueue(redis)

        async def backing_off() -> bool:
            return await queue.counts() == (0, 1, 0)

        await wait_until_async(backing_off, what="the event waiting out its backoff")
        clock.advance(23 * 3600)  # within the day: retried, not given up

        async def retried() -> bool:
            return len(receiver.deliveries) >= 2

        await wait_until_async(retried, what="a retry within the max age")
        assert (await queue.counts())[2] == 0
        clock.advance(2 * 3600)  # past 24 h since the event was made

        async def dead() -> bool:
            return (await queue.counts())[2] == 1

        await wait_until_async(dead, what="the dead letter")
        assert await queue.counts() == (0, 0, 1)
        (letter,) = await queue.dead_letters()
        assert letter["id"] == receiver.deliveries[0].event_id
        assert json.loads(letter["body"])["data"]["link_id"] == linked.link_id
        assert letter["reason"] == "status 500"
        assert int(letter["attempts"]) == len(receiver.deliveries)
        assert await metric_sum(client, DEAD_LETTERED, type="link.connected") == 1
        assert await redis.xlen(EVENT_DEAD_KEY) == 1

        async def gauge() -> bool:
            return await metric_sum(client, "bff_webhooks_backlog", state="dead") == 1

        await wait_until_async(gauge, what="the dead letters in /metrics")


async def test_an_event_a_process_died_before_relaying_is_swept_from_its_outbox(
    redis_url: str,
    redis: Redis,
    sandbox: Sandbox,
    receiver: Receiver,
    receiver_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The change and its event were stored; the process that made them died before its relay
    ran (here: an app whose relay never starts). Another replica's sweep delivers it."""
    fast_delivery(monkeypatch)
    monkeypatch.setattr(app.main, "_event_delivery", lambda *args: None)
    first = create_app(events_settings(redis_url, sandbox, receiver_url))
    async with serve_in_process(first) as client:
        linked = await connect(client, sandbox)
    assert await redis.xlen(outbox_key(linked.link_id)) == 1
    monkeypatch.undo()
    fast_delivery(monkeypatch)
    second = create_app(events_settings(redis_url, sandbox, receiver_url))
    async with serve_in_process(second) as _:
        (delivery,) = await received(receiver, 1, "the swept event")
        assert (delivery.type, delivery.link_id) == ("link.connected", linked.link_id)
    assert await redis.exists(outbox_key(linked.link_id)) == 0


# -- server-side request forgery -------------------------------------------------------------------


def _private_name() -> str:
    """This machine's own name: it resolves (through /etc/hosts) to a loopback or private
    address, as an internal service's name would."""
    name = socket.gethostname()
    addresses = {info[4][0] for info in socket.getaddrinfo(name, 443)}
    assert addresses, name
    return name


async def test_production_refuses_to_deliver_to_a_private_destination(
    redis_url: str, redis: Redis, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name that resolves inside the network: refused before any connection, every time."""
    fast_delivery(monkeypatch)
    with receiving(receiver) as url:
        port = url.split(":")[2].split("/")[0]
        settings = _production(redis_url, f"https://{_private_name()}:{port}/hooks/bff")
        bff = create_app(settings)
        async with serve_in_process(bff) as client:
            await _write_event(redis, "refused-link")

            async def refused() -> bool:
                return await metric_sum(client, ATTEMPTS, outcome="refused") >= 2

            await wait_until_async(refused, what="refused attempts")
        assert receiver.deliveries == []


def _production(redis_url: str, webhook_url: str, **overrides: str) -> Settings:
    return make_settings(
        redis_url,
        BFF_ENV="production",
        BFF_AUTH="session",
        BFF_PUBLIC_URL="https://bff.example.com",
        BFF_ENCRYPTION_KEY=base64.urlsafe_b64encode(bytes(range(32))).decode(),
        BFF_RETURN_URLS="https://app.example.com/linked",
        BFF_CORS_ORIGINS="https://app.example.com",
        FLINKS_CUSTOMER_ID="43387ca6-0391-4c82-857d-70d95f087ecb",
        FLINKS_SECRET_KEY="prod-secret-value",
        BFF_WEBHOOK_URL=webhook_url,
        BFF_WEBHOOK_SECRET=SECRET,
        **overrides,
    )


async def _write_event(redis: Redis, tag: str) -> None:
    """An event in an outbox, as a state change writes it (the sweep finds it)."""
    data = {"link_id": tag, "owner": "o", "institution": None}
    now = datetime.now(UTC)
    body = json.dumps({"type": "link.deleted", "timestamp": now.isoformat(), "data": data})
    created = str(int(now.timestamp() * 1000))
    await redis.xadd(
        outbox_key(tag), {"id": f"msg_{tag}", "order": tag, "body": body, "created": created}
    )


def test_a_link_filed_twice_by_one_flow_is_one_event() -> None:
    """A flow taken over after its replica died between filing the link and recording the
    outcome files the link again: the same event id, so the relay takes it once (the chaos run
    saw a link.connected twice, under two ids, before this)."""
    events = Events(FakeClock(), enabled=True)
    link = LinkRecord(
        link_id="L" * 22,
        owner="owner",
        status="active",
        created_at=datetime(2026, 11, 29, tzinfo=UTC),
        flow_id="F" * 22,
    )
    first = events.link_connected(link, tag=None)
    again = events.link_connected(link, tag=None)
    other_flow = events.link_connected(link.model_copy(update={"flow_id": "G" * 22}), tag=None)
    assert first is not None
    assert again is not None
    assert other_flow is not None
    assert first.event_id == again.event_id
    assert other_flow.event_id != first.event_id
    assert first.event_id.startswith("msg_")


class _Surprising:
    """A sender that raises what no attempt should (a bug, say) on its first call, then
    delivers: the stand-in for a failure no real receiver can be made to cause."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def send(self, event_id: str, body: str, when: datetime) -> Attempt:
        self.calls.append(event_id)
        if len(self.calls) == 1:
            raise RuntimeError("unexpected")
        return Attempt("delivered", 204)


async def test_an_unexpected_error_in_one_attempt_is_a_failed_attempt_not_a_dead_consumer(
    redis: Redis,
) -> None:
    sender = _Surprising()
    events = Events(FakeClock(), enabled=True)
    policy = replace(DeliveryPolicy(), **FAST)
    delivery = EventDelivery(
        EventQueue(redis),
        sender,
        events,
        policy,
        FakeClock(),
        DeliveryMetrics(CollectorRegistry()),
        draw=lambda low, high: low,  # no backoff: due at once
    )
    link = LinkRecord(
        link_id="S" * 22, owner="o", status="active", created_at=datetime(2026, 11, 29, tzinfo=UTC)
    )
    made = events.accounts_ready(link, accounts=1, refreshed_at=link.created_at)
    assert made is not None
    await redis.xadd(
        outbox_key(link.link_id),
        {"id": made.event_id, "order": made.order, "body": made.body, "created": made.created_ms},
    )
    delivery.start()
    try:

        async def delivered() -> bool:
            return len(sender.calls) >= 2

        await wait_until_async(delivered, what="the event retried after the surprise")
        await drained(redis)
    finally:
        await delivery.stop()
    assert sender.calls == [made.event_id, made.event_id]
