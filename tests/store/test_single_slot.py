"""Every multi-key operation of the store and the rate limiter stays in one hash slot.

Run against a real Valkey in cluster mode (one node holding every slot): like any Redis Cluster
node, it refuses a transaction or script whose keys are in different slots with CROSSSLOT, which
the store reports as StoreUnavailable.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from app.errors import StoreUnavailable
from app.flows.records import NATIVE_BINDING
from app.flows.service import new_state
from app.ratelimit import Limits, RateCounters, RateLimiter
from app.store import RedisClient, Store, close_redis, connect_redis
from tests.redis_server import RedisServer, start_one_node_cluster
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
    assert await store.move_session("old-session", "new-session", 60) == "owner"


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
