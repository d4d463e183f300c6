"""The BFF's events out at the store (app/store.py, "the BFF's events out"): an event is in its
change's outbox if and only if the change was stored, it is relayed to the delivery stream once,
and only the first undelivered event of an order is ever in the stream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest
from redis.asyncio import Redis

from app.flows.records import FlowRecord, LinkRecord, OutboxEvent, session_hash
from app.store import (
    EVENT_RETRY_KEY,
    EVENT_SWEEP_KEY,
    EVENTS_GROUP,
    EVENTS_KEY,
    EventQueue,
    QueuedEvent,
    RedisClient,
    Store,
    close_redis,
    connect_redis,
    event_key,
    event_order_key,
    event_seen_key,
    flow_key,
    link_key,
    outbox_key,
    owner_key,
)
from tests.redis_server import RedisServer
from tests.waiting import wait_until_async

KEY = bytes(range(32))
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
# On the suite's 3-primary cluster (TEST_TOPOLOGY=cluster) these three land on three different
# primaries (slots 4362, 8103 and 15259), so a sweep that scanned one node would miss some.
LINK = "linkAAAAAAAAAAAAAAAAAA"
OTHER_LINK = "linkBBBBBBBBBBBBBBBBBB"
FLOW = "flowAAAAAAAAAAAAAAAAAA"
OWNER = "owner-a"
SEEN_TTL = 7200
EVENT_TTL = 3600


def event(number: int, order: str = LINK) -> OutboxEvent:
    return OutboxEvent(
        event_id=f"msg_{number}",
        order=order,
        body=f'{{"type":"link.connected","n":{number}}}',
        created_ms=NOW_MS + number,
    )


def link(status: str = "active", owner: str = OWNER, link_id: str = LINK) -> LinkRecord:
    return LinkRecord.model_validate(
        {"link_id": link_id, "owner": owner, "status": status, "created_at": NOW}
    )


def flow() -> FlowRecord:
    return FlowRecord(
        flow_id=FLOW,
        kind="connect",
        session_hash=session_hash("session"),
        created_at=NOW,
        expires_at=NOW + timedelta(minutes=30),
    )


def outbox_fields(sent: OutboxEvent) -> dict[str, str]:
    return {
        "id": sent.event_id,
        "order": sent.order,
        "body": sent.body,
        "created": str(sent.created_ms),
    }


@pytest.fixture
async def client(redis_url: str, redis: Redis) -> AsyncIterator[RedisClient]:
    """The app's kind of client (`redis` is the test's own, which also empties the database)."""
    own = connect_redis(redis_url, max_connections=8)
    yield own
    await close_redis(own)


@pytest.fixture
def store(client: RedisClient) -> Store:
    return Store(client, encryption_key=KEY, flow_ttl=60, state_ttl=30, login_ttl=90)


@pytest.fixture
async def queue(client: RedisClient) -> EventQueue:
    events = EventQueue(client)
    await events.ensure_group()
    return events


async def stream_fields(redis: Redis, key: str) -> list[dict[str, str]]:
    raw = await cast(Awaitable[list[tuple[str, dict[str, str]]]], redis.xrange(key))
    return [fields for _, fields in raw]


async def outbox(redis: Redis, tag: str) -> list[dict[str, str]]:
    return await stream_fields(redis, outbox_key(tag))


async def stream_ids(redis: Redis) -> list[str]:
    """The event ids in the delivery stream, oldest first."""
    return [fields["id"] for fields in await stream_fields(redis, EVENTS_KEY)]


async def read_one(queue: EventQueue, consumer: str = "a") -> QueuedEvent:
    (item,) = await queue.read(consumer, 10, 1)
    return item


async def relay_all(queue: EventQueue, *events: OutboxEvent) -> None:
    for sent in events:
        assert await queue.relay(sent, SEEN_TTL, EVENT_TTL)


async def test_filing_a_link_writes_it_its_event_and_its_job_in_one_step(
    store: Store, redis: Redis
) -> None:
    """`Store.file_link` (a connected flow's link): the record, its event, the cached data
    dropped and the data job kept, all or nothing; a refresh keeps the record's created_at."""
    first = link()
    assert (
        await store.file_link(
            first, when=("absent",), ttl=60, event=event(1), job="job-1", job_ttl=30
        )
        == "written"
    )
    assert await store.get_data_job(LINK) == "job-1"
    # In the same round trip, the link joins its owner's index, which lives as long as it.
    assert await redis.smembers(owner_key(OWNER)) == {LINK}
    assert 0 < await redis.ttl(owner_key(OWNER)) <= 60
    await store.put_data(LINK, "the data", 60)
    later = first.model_copy(update={"created_at": NOW + timedelta(days=3)})
    assert (
        await store.file_link(
            later, when=("active",), ttl=60, event=event(2), job="job-2", job_ttl=30
        )
        == "written"
    )
    stored = await store.get_link(LINK)
    assert stored is not None
    assert stored.created_at == NOW  # the first filing's
    assert await store.get_data(LINK) is None
    assert await store.get_data_job(LINK) == "job-2"
    assert [f["id"] for f in await outbox(redis, LINK)] == ["msg_1", "msg_2"]
    # Another owner's, or a status not listed: nothing at all is written.
    stranger = link(owner="owner-b")
    assert (
        await store.file_link(
            stranger, when=("active",), ttl=60, event=event(3), job="job-3", job_ttl=30
        )
        == "elsewhere"
    )
    assert not await redis.exists(owner_key("owner-b"))  # its index entry taken back
    assert (
        await store.file_link(
            later, when=("absent",), ttl=60, event=event(4), job="job-4", job_ttl=30
        )
        == "kept"
    )
    assert await store.get_data_job(LINK) == "job-2"
    assert await redis.smembers(owner_key(OWNER)) == {LINK}
    assert [f["id"] for f in await outbox(redis, LINK)] == ["msg_1", "msg_2"]


async def test_filing_a_link_on_a_server_that_has_not_seen_the_script(
    own_redis: RedisServer,
) -> None:
    """The filing and the owner's index share a pipeline, where redis-py does not load a
    missing script: the filing is sent again as a script call, and happens once. (A server of
    its own: SCRIPT FLUSH is server-wide.)"""
    client = connect_redis(own_redis.url, max_connections=2)
    try:
        store = Store(client, encryption_key=KEY, flow_ttl=60, state_ttl=30, login_ttl=90)
        await client.script_flush()
        filed = await store.file_link(
            link(), when=("absent",), ttl=60, event=event(1), job="j", job_ttl=30
        )
        assert filed == "written"
        assert [f["id"] for f in await outbox(cast(Redis, client), LINK)] == ["msg_1"]
        assert await cast(Redis, client).smembers(owner_key(OWNER)) == {LINK}
    finally:
        await close_redis(client)


# -- 1. written with the change, and only with it ----------------------------------------------


async def test_a_refused_link_write_puts_no_event_in_the_outbox(store: Store, redis: Redis) -> None:
    assert await store.write_link(link(), when=("absent",), ttl=60) == "written"
    assert not await redis.exists(outbox_key(LINK))  # no event given, none written

    # "kept": the stored status is not one the write allows.
    assert await store.write_link(link(), when=("absent",), ttl=60, event=event(1)) == "kept"
    # "elsewhere": another owner's link.
    taken = link(owner="owner-b")
    assert await store.write_link(taken, when=("active",), ttl=60, event=event(2)) == "elsewhere"
    assert not await redis.exists(outbox_key(LINK))

    deleting = link(status="deleting")
    assert await store.write_link(deleting, when=("active",), ttl=None, event=event(3)) == "written"
    assert await outbox(redis, LINK) == [outbox_fields(event(3))]
    stored = await store.get_link(LINK)
    assert stored is not None
    assert stored.status == "deleting"


async def test_a_flow_s_event_is_written_only_by_the_transition_that_wins(
    store: Store, redis: Redis
) -> None:
    first = flow()
    await store.create_flow(first)
    failed = first.next(status="failed")
    assert not await store.replace_flow(first.version + 1, failed, event=event(1, FLOW))
    assert not await redis.exists(outbox_key(FLOW))
    # A flow that is gone takes no event either.
    gone = failed.model_copy(update={"flow_id": "flowBBBBBBBBBBBBBBBBBB"})
    assert not await store.replace_flow(0, gone, event=event(2, FLOW))
    assert not await redis.exists(outbox_key("flowBBBBBBBBBBBBBBBBBB"))

    assert await store.replace_flow(first.version, failed, event=event(3, FLOW))
    assert await outbox(redis, FLOW) == [outbox_fields(event(3, FLOW))]
    assert await store.get_flow(FLOW) == failed
    # The outbox is in the flow's slot: the script's keys share its hash tag.
    assert outbox_key(FLOW).endswith("{" + FLOW + "}")
    assert flow_key(FLOW).endswith("{" + FLOW + "}")


async def test_account_data_is_written_with_its_event(store: Store, redis: Redis) -> None:
    await store.put_data(LINK, '{"accounts":[]}', 60)
    assert not await redis.exists(outbox_key(LINK))
    await store.put_data(LINK, '{"accounts":[1]}', 60, event=event(1))
    assert await store.get_data(LINK) == '{"accounts":[1]}'
    assert await outbox(redis, LINK) == [outbox_fields(event(1))]


# -- 2. relayed once ---------------------------------------------------------------------------


async def test_an_event_relayed_twice_is_queued_once(queue: EventQueue, redis: Redis) -> None:
    assert await queue.relay(event(1), SEEN_TTL, EVENT_TTL)
    assert not await queue.relay(event(1), SEEN_TTL, EVENT_TTL)
    assert await stream_ids(redis) == ["msg_1"]
    assert await redis.lrange(event_order_key(LINK), 0, -1) == ["msg_1"]
    assert await redis.hgetall(event_key("msg_1")) == {
        "body": event(1).body,
        "order": LINK,
        "created": str(event(1).created_ms),
        "attempts": "0",
    }
    assert 0 < await redis.ttl(event_key("msg_1")) <= EVENT_TTL
    assert 0 < await redis.ttl(event_order_key(LINK)) <= EVENT_TTL
    assert EVENT_TTL < await redis.ttl(event_seen_key("msg_1")) <= SEEN_TTL


async def test_trimming_an_outbox_drops_it_once_empty(
    store: Store, queue: EventQueue, redis: Redis
) -> None:
    await store.put_data(LINK, "{}", 60, event=event(1))
    await store.put_data(LINK, "{}", 60, event=event(2))
    entries = await queue.outbox(LINK, 10)
    assert [sent for _, sent in entries] == [event(1), event(2)]
    assert [sent for _, sent in await queue.outbox(LINK, 1)] == [event(1)]

    await queue.trim_outbox(LINK, [entries[0][0]])
    assert [sent for _, sent in await queue.outbox(LINK, 10)] == [event(2)]
    await queue.trim_outbox(LINK, [entries[1][0]])
    assert not await redis.exists(outbox_key(LINK))
    await queue.trim_outbox(LINK, [])  # nothing to do

    # An entry written between the read and the trim stays, and so does its outbox.
    await store.put_data(LINK, "{}", 60, event=event(3))
    read = await queue.outbox(LINK, 10)
    await store.put_data(LINK, "{}", 60, event=event(4))
    await queue.trim_outbox(LINK, [entry_id for entry_id, _ in read])
    assert [sent for _, sent in await queue.outbox(LINK, 10)] == [event(4)]


# -- 3. in order -------------------------------------------------------------------------------


async def test_only_the_first_undelivered_event_of_an_order_is_readable(
    queue: EventQueue, redis: Redis
) -> None:
    await relay_all(queue, event(1), event(2), event(3))
    assert await stream_ids(redis) == ["msg_1"]
    first = await read_one(queue)
    assert first == QueuedEvent(
        first.entry_id, "msg_1", LINK, body=event(1).body, created_ms=event(1).created_ms
    )
    assert await queue.read("b", 10, 1) == []  # the rest wait in the order's list

    assert await queue.finish(first)
    second = await read_one(queue)
    assert (second.event_id, second.body) == ("msg_2", event(2).body)
    assert await queue.finish(second)
    third = await read_one(queue)
    assert third.event_id == "msg_3"
    assert await redis.lrange(event_order_key(LINK), 0, -1) == ["msg_3"]

    # Once an order is drained, its next event goes straight to the stream.
    assert await queue.finish(third)
    assert not await redis.exists(event_order_key(LINK))
    await relay_all(queue, event(4))
    assert (await read_one(queue)).event_id == "msg_4"


async def test_events_of_different_orders_are_readable_at_once(
    queue: EventQueue, redis: Redis
) -> None:
    await relay_all(queue, event(1), event(2), event(3, OTHER_LINK))
    read = await queue.read("a", 10, 1)
    assert sorted((item.event_id, item.order) for item in read) == [
        ("msg_1", LINK),
        ("msg_3", OTHER_LINK),
    ]


async def test_a_read_before_the_group_exists_makes_it(client: RedisClient, redis: Redis) -> None:
    queue = EventQueue(client)
    await relay_all(queue, event(1))
    assert await queue.read("a", 10, 1) == []  # NOGROUP: the group is made, from the start
    assert (await read_one(queue)).event_id == "msg_1"
    await queue.ensure_group()  # again: BUSYGROUP is no error
    groups = await redis.xinfo_groups(EVENTS_KEY)
    assert [group["name"] for group in groups] == [EVENTS_GROUP]


# -- 4. finished twice -------------------------------------------------------------------------


async def test_finishing_twice_queues_the_next_event_once(queue: EventQueue, redis: Redis) -> None:
    await relay_all(queue, event(1), event(2))
    first = await read_one(queue, "a")
    # "a" is presumed dead; "b" takes the entry over and finishes it first.
    (taken,) = await queue.claim("b", 0, 10)
    assert taken.entry_id == first.entry_id
    assert await queue.finish(taken)
    assert await stream_ids(redis) == ["msg_2"]

    assert not await queue.finish(first)
    assert await stream_ids(redis) == ["msg_2"]
    assert await redis.lrange(event_order_key(LINK), 0, -1) == ["msg_2"]
    assert [item.event_id for item in await queue.read("c", 10, 1)] == ["msg_2"]


# -- 5. retried after a backoff ----------------------------------------------------------------


async def test_a_failed_attempt_waits_out_its_backoff_then_is_queued_again(
    queue: EventQueue, redis: Redis
) -> None:
    await relay_all(queue, event(1), event(2))
    item = await read_one(queue)
    due = NOW_MS + 2000
    assert await queue.retry_at(item, due)
    # Acked and out of the stream; waiting in the retry set, with its order.
    assert await redis.xlen(EVENTS_KEY) == 0
    assert (await redis.xpending(EVENTS_KEY, EVENTS_GROUP))["pending"] == 0
    assert await redis.zrange(EVENT_RETRY_KEY, 0, -1, withscores=True) == [
        (f"msg_1|{LINK}", float(due))
    ]
    assert await queue.counts() == (0, 1, 0)
    assert await queue.read("a", 10, 1) == []  # the next of its order is not let through

    assert await queue.requeue_due(due - 1, 10) == 0
    assert await queue.counts() == (0, 1, 0)
    assert await queue.requeue_due(due, 10) == 1
    assert await queue.counts() == (1, 0, 0)

    again = await read_one(queue)
    assert (again.event_id, again.order, again.attempts) == ("msg_1", LINK, 1)
    assert again.body == event(1).body
    assert await queue.finish(again)
    assert (await read_one(queue)).event_id == "msg_2"

    # A late failure report for an event already done schedules nothing.
    assert not await queue.retry_at(again, due)
    assert not await queue.retry_at(item, due)
    assert await queue.counts() == (1, 0, 0)


async def test_requeue_moves_at_most_count_events(queue: EventQueue) -> None:
    await relay_all(queue, event(1), event(2, OTHER_LINK))
    for item in await queue.read("a", 10, 1):
        assert await queue.retry_at(item, NOW_MS)
    assert await queue.requeue_due(NOW_MS, 1) == 1
    assert await queue.counts() == (1, 1, 0)
    assert await queue.requeue_due(NOW_MS, 10) == 1
    assert await queue.counts() == (2, 0, 0)


# -- 6. dead letters ---------------------------------------------------------------------------


async def test_a_dead_letter_keeps_the_event_and_lets_its_order_go_on(
    queue: EventQueue, redis: Redis
) -> None:
    await relay_all(queue, event(1), event(2))
    item = await read_one(queue)
    assert await queue.retry_at(item, NOW_MS)
    assert await queue.requeue_due(NOW_MS, 10) == 1
    retried = await read_one(queue)
    assert retried.attempts == 1

    assert await queue.finish(retried, dead_reason="status 500")
    assert await queue.dead_letters() == [
        {"id": "msg_1", "body": event(1).body, "reason": "status 500", "attempts": "2"}
    ]
    assert await queue.counts() == (1, 0, 1)
    assert not await redis.exists(event_key("msg_1"))
    assert (await read_one(queue)).event_id == "msg_2"


# -- 7. a record gone --------------------------------------------------------------------------


async def test_an_event_whose_record_is_gone_still_leaves_its_order(
    queue: EventQueue, redis: Redis
) -> None:
    await relay_all(queue, event(1), event(2))
    await redis.delete(event_key("msg_1"))
    item = await read_one(queue)
    assert (item.event_id, item.order, item.body) == ("msg_1", LINK, None)

    assert not await queue.finish(item)
    assert await stream_ids(redis) == ["msg_2"]
    assert await redis.lrange(event_order_key(LINK), 0, -1) == ["msg_2"]
    assert await queue.dead_letters() == []
    assert (await read_one(queue)).body == event(2).body


# -- 8. claimed from a dead consumer -----------------------------------------------------------


async def test_an_entry_left_unfinished_is_claimed_by_another_consumer(
    queue: EventQueue, redis: Redis
) -> None:
    await relay_all(queue, event(1))
    assert await queue.claim("b", 0, 10) == []  # nothing taken yet
    item = await read_one(queue, "a")
    assert await queue.claim("b", 60_000, 10) == []  # not idle long enough

    (claimed,) = await queue.claim("b", 0, 10)
    assert claimed == item
    (pending,) = await redis.xpending_range(EVENTS_KEY, EVENTS_GROUP, min="-", max="+", count=10)
    assert pending["consumer"] == "b"

    # "a" leaves the group (it holds nothing now); "b" holds the entry, so it stays.
    await queue.leave("a")
    await queue.leave("b")
    consumers = await redis.xinfo_consumers(EVENTS_KEY, EVENTS_GROUP)
    assert [consumer["name"] for consumer in consumers] == ["b"]
    assert await queue.finish(claimed)
    await queue.leave("b")
    assert await redis.xinfo_consumers(EVENTS_KEY, EVENTS_GROUP) == []


# -- 9. the sweep ------------------------------------------------------------------------------


async def test_the_sweep_finds_every_outbox_and_nothing_else(
    store: Store, queue: EventQueue, redis: Redis
) -> None:
    assert await queue.outbox_tags() == []
    await store.put_data(LINK, "{}", 60, event=event(1))
    await store.put_data(OTHER_LINK, "{}", 60, event=event(2, OTHER_LINK))
    await store.create_flow(flow())
    assert await store.replace_flow(0, flow().next(status="failed"), event=event(3, FLOW))
    # Keys that are not outboxes: another kind's stream, a key of another type, no hash tag.
    await store.write_link(link(), when=("absent",), ttl=60)
    assert await redis.exists(link_key(LINK), EVENTS_KEY)
    await redis.set(outbox_key("not-a-stream"), "x")
    await redis.xadd("bff:v1:outbox:untagged", {"id": "x"})
    await redis.xadd("bff:v1:outboxes:{x}", {"id": "x"})

    assert await queue.outbox_tags() == sorted([FLOW, LINK, OTHER_LINK])

    entries = await queue.outbox(LINK, 10)
    await queue.trim_outbox(LINK, [entry_id for entry_id, _ in entries])
    assert await queue.outbox_tags() == sorted([FLOW, OTHER_LINK])


async def test_one_holder_sweeps_at_a_time(queue: EventQueue, redis: Redis) -> None:
    assert await queue.take_sweep("a", 60_000)
    assert not await queue.take_sweep("b", 60_000)
    assert not await queue.take_sweep("a", 60_000)  # not renewed: it runs out
    assert await redis.get(EVENT_SWEEP_KEY) == "a"
    assert 0 < await redis.pttl(EVENT_SWEEP_KEY) <= 60_000

    await redis.pexpire(EVENT_SWEEP_KEY, 1)

    async def taken_by_b() -> bool:
        return await queue.take_sweep("b", 60_000)

    await wait_until_async(taken_by_b, what="the sweep to be free once its time ran out")
    assert await redis.get(EVENT_SWEEP_KEY) == "b"
