"""Every multi-key operation of the store and the rate limiter stays in one hash slot.

Run against a real Valkey in cluster mode (one node holding every slot): like any Redis Cluster
node, it refuses a transaction or script whose keys are in different slots with CROSSSLOT, which
the store reports as StoreUnavailable.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis, RedisCluster
from redis.crc import key_slot

from app.errors import StoreUnavailable
from app.flows.records import NATIVE_BINDING
from app.flows.service import new_state
from app.ratelimit import Limits, RateCounters, RateLimiter
from app.store import (
    EVENT_DEAD_KEY,
    EVENT_RETRY_KEY,
    EVENT_SWEEP_KEY,
    EVENTS_KEY,
    EventQueue,
    RedisClient,
    Store,
    close_redis,
    connect_redis,
    data_job_key,
    data_key,
    event_key,
    event_order_key,
    event_seen_key,
    flow_key,
    lease_key,
    link_key,
    login_key,
    outbox_key,
    run_scripts,
)
from tests.redis_server import RedisServer, start_one_node_cluster
from tests.store.test_event_queue import FLOW, LINK, NOW_MS, event, flow, link
from tests.store.test_store import SESSION, new_flow


@pytest.fixture(scope="module")
def cluster_node() -> Iterator[RedisServer]:
    server = start_one_node_cluster()
    yield server
    server.stop()


@pytest.fixture
async def cluster_redis(cluster_node: RedisServer) -> AsyncIterator[RedisClient]:
    client = connect_redis(cluster_node.url, max_connections=8)
    await client.flushdb()
    yield client
    await close_redis(client)


def _store(redis: RedisClient) -> Store:
    return Store(
        redis, encryption_key=secrets.token_bytes(32), flow_ttl=60, state_ttl=30, login_ttl=90
    )


async def test_the_store_s_operations_each_stay_in_one_slot(cluster_redis: RedisClient) -> None:
    store = _store(cluster_redis)
    now = datetime.now(UTC)
    oauth = new_flow("oauth")
    state = new_state(oauth.flow_id)
    await store.create_flow(oauth, state=state, session=SESSION)
    connect = new_flow("connect")
    await store.create_flow(connect)
    assert await store.consume_state(state, [SESSION, NATIVE_BINDING]) == (SESSION, oauth)

    lease = store.new_lease(connect.flow_id, now, timedelta(seconds=5))
    login_id = str(uuid.uuid4())
    authorizing = connect.next(status="authorizing")
    assert await store.replace_flow(0, authorizing, login_id=login_id)
    assert await store.replace_flow(1, authorizing.next(status="mfa_required"), lease=lease)
    assert await store.get_login_id(connect.flow_id) == login_id
    assert await store.renew_lease(lease)
    assert await store.release_lease(lease)
    assert await store.take_lease(lease, now)

    await store.create_session("old-session", "owner", 60)
    assert await store.move_session("old-session", "new-session", "owner", 60)
    assert await store.session_owner("new-session") == "owner"
    assert await store.session_owner("old-session") is None


async def test_a_link_is_filed_with_its_owner_s_index_across_slots(
    cluster_redis: RedisClient,
) -> None:
    """The filing's script is in the link's slot and the owner's index in the owner's: sent
    at once, each to its own slot, even where the server has not seen the script."""
    store = _store(cluster_redis)
    await cluster_redis.script_flush()
    filed = await store.file_link(
        link(), when=("absent",), ttl=60, event=event(1), job="j", job_ttl=30
    )
    assert filed == "written"
    assert [record.link_id for record in await store.owner_links(link().owner)] == [LINK]
    assert await store.get_data_job(LINK) == "j"


async def test_the_commands_sent_beside_a_script_keep_their_order(
    cluster_node: RedisServer, cluster_redis: RedisClient
) -> None:
    """On a cluster client the script and the commands go at once. Sent one by one, two
    commands on one key could go out on two connections and cross (an EXPIRE before the SADD
    it was for left an owner's index with no TTL): they go out on one connection, in order,
    which the server's MONITOR shows."""
    client = connect_redis(cluster_node.url, cluster=True, max_connections=32)
    watcher = Redis.from_url(cluster_node.url, decode_responses=True)
    try:
        assert isinstance(client, RedisCluster)
        # Connections left free by earlier work, as in a running service: a command sent alone
        # takes whichever is free.
        await asyncio.gather(*(client.get("order-check") for _ in range(8)))
        script = client.register_script("return redis.call('INCR', KEYS[1])")
        pushes = [("RPUSH", "order-check", n) for n in range(20)]
        async with watcher.monitor() as monitor:
            [counted] = await run_scripts(
                client, [(script, ["counted"], [])], *pushes, ("EXPIRE", "order-check", 60)
            )
            seen: list[dict[str, Any]] = []
            async with asyncio.timeout(10):  # a bound on a failure, not a wait: lines are there
                while len(seen) < len(pushes) + 1:
                    line = await monitor.next_command()
                    if line["command"].split(" ", 1)[0] in {"RPUSH", "EXPIRE"}:
                        seen.append(dict(line))
    finally:
        await watcher.aclose()
        await close_redis(client)
    assert counted == 1
    assert [line["command"] for line in seen] == [
        *(f"RPUSH order-check {n}" for n in range(20)),
        "EXPIRE order-check 60",
    ]
    assert len({line["client_port"] for line in seen}) == 1
    assert await cluster_redis.lrange("order-check", 0, -1) == [str(n) for n in range(20)]
    assert 0 < await cluster_redis.ttl("order-check") <= 60


async def test_the_rate_limiter_counts_each_key_in_its_own_slot(cluster_redis: RedisClient) -> None:
    counters = RateCounters(cluster_redis)
    hits = [("start:ip", "192.0.2.1"), ("start:session", "abc")]
    assert await counters.hit(hits, 30) == [(1, 30), (1, 30)]
    assert [count for count, _ in await counters.hit(hits, 30)] == [2, 2]
    limiter = RateLimiter(counters, Limits(window=30, per_ip=10, per_session=10))
    await limiter.check("start", client_ip="192.0.2.1", session="abc")


async def test_a_taken_flow_id_writes_no_state(cluster_redis: RedisClient) -> None:
    store = _store(cluster_redis)
    first = new_flow("oauth")
    state = new_state(first.flow_id)
    await store.create_flow(first, state=state, session=SESSION)
    again = first.model_copy(update={"tag": "again"})
    with pytest.raises(StoreUnavailable):
        await store.create_flow(again, state=new_state(first.flow_id), session=SESSION)
    assert await store.consume_state(state, [SESSION]) == (SESSION, first)


async def test_the_rate_counters_load_their_script_where_the_server_lacks_it(
    cluster_redis: RedisClient,
) -> None:
    counters = RateCounters(cluster_redis)
    await cluster_redis.script_flush()
    hits = [("mint:ip", "192.0.2.9"), ("mint:session", "xyz")]
    assert await counters.hit(hits, 30) == [(1, 30), (1, 30)]
    assert await counters.hit(hits, 30) == [(2, 30), (2, 30)]


def test_an_event_s_keys_share_the_slot_of_what_they_go_with() -> None:
    """An outbox is in its change's slot; every key of the delivery queue in the `{events}` one."""
    tag = LINK
    same_slot = (flow_key, login_key, lease_key, link_key, data_key, data_job_key)
    for key in (builder(tag) for builder in same_slot):
        assert key_slot(key.encode()) == key_slot(outbox_key(tag).encode())
    queue_keys = [
        EVENTS_KEY,
        EVENT_RETRY_KEY,
        EVENT_DEAD_KEY,
        EVENT_SWEEP_KEY,
        event_key("msg_1"),
        event_order_key(tag),
        event_seen_key("msg_1"),
    ]
    assert {key_slot(key.encode()) for key in queue_keys} == {key_slot(b"events")}


async def test_the_events_out_each_stay_in_one_slot(cluster_redis: RedisClient) -> None:
    store = _store(cluster_redis)
    queue = EventQueue(cluster_redis)
    await store.create_flow(flow())
    assert await store.replace_flow(0, flow().next(status="failed"), event=event(1, FLOW))
    assert await store.write_link(link(), when=("absent",), ttl=60, event=event(2)) == "written"
    await store.put_data(LINK, "{}", 60, event=event(3))
    assert await queue.outbox_tags() == [FLOW, LINK]
    for tag in (FLOW, LINK):
        entries = await queue.outbox(tag, 10)
        for _, sent in entries:
            assert await queue.relay(sent, 60, 60)
        await queue.trim_outbox(tag, [entry_id for entry_id, _ in entries])
    assert await queue.take_sweep("a", 1000)

    await queue.ensure_group()
    first, second = await queue.read("a", 10, 1)
    assert await queue.retry_at(first, NOW_MS)
    assert await queue.requeue_due(NOW_MS, 10) == 1
    (claimed,) = await queue.claim("b", 0, 10)
    assert claimed.event_id == second.event_id == "msg_2"
    assert await queue.finish(claimed)
    retried, third = await queue.read("a", 10, 1)
    assert (retried.event_id, third.event_id) == ("msg_1", "msg_3")
    assert await queue.finish(retried, dead_reason="status 500")
    assert await queue.finish(third)
    assert await queue.counts() == (0, 0, 1)
    assert len(await queue.dead_letters()) == 1
    await queue.leave("a")
