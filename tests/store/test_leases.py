"""A flow's lease: who is asking Flinks about it, until when. Held by one holder at a time,
free once its time is up on the app's clock, renewed and released only by its holder, and taken
together with the flow's claim in one atomic step."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from app.flows import FlowRecord
from app.store import Store, close_redis, connect_redis, flow_key, lease_key

TTL = timedelta(seconds=20)
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
FLOW_ID = "f" * 22


@pytest.fixture
async def store(redis_url: str, redis: Redis) -> AsyncIterator[Store]:
    client = connect_redis(redis_url)
    yield Store(
        client, encryption_key=secrets.token_bytes(32), flow_ttl=60, state_ttl=30, login_ttl=90
    )
    await close_redis(client)


async def test_a_free_lease_is_taken_by_one_holder_only(store: Store, redis: Redis) -> None:
    first, second = store.new_lease(FLOW_ID, NOW, TTL), store.new_lease(FLOW_ID, NOW, TTL)
    assert first.holder != second.holder

    assert await store.take_lease(first, NOW)
    assert not await store.take_lease(second, NOW + TTL - timedelta(milliseconds=1))
    # The key lives on Redis' clock, longer than the lease: the time inside decides.
    assert TTL.total_seconds() < await redis.ttl(lease_key(FLOW_ID)) <= 2 * TTL.total_seconds()
    assert lease_key(FLOW_ID) == "bff:v1:lease:{" + FLOW_ID + "}"  # the flow's hash slot


async def test_many_racing_takers_get_one_lease(store: Store) -> None:
    leases = [store.new_lease(FLOW_ID, NOW, TTL) for _ in range(20)]
    taken = await asyncio.gather(*(store.take_lease(lease, NOW) for lease in leases))
    assert taken.count(True) == 1


async def test_a_lease_whose_time_is_up_is_free_to_take(store: Store) -> None:
    dead = store.new_lease(FLOW_ID, NOW, TTL)
    assert await store.take_lease(dead, NOW)
    later = NOW + TTL
    successor = store.new_lease(FLOW_ID, later, TTL)
    assert await store.take_lease(successor, later)
    # The holder that ran out cannot renew or release what is now someone else's.
    assert not await store.renew_lease(replace(dead, until=later + TTL))
    assert not await store.release_lease(dead)
    assert not await store.take_lease(store.new_lease(FLOW_ID, later, TTL), later)


async def test_only_its_holder_renews_or_releases_a_lease(store: Store) -> None:
    lease = store.new_lease(FLOW_ID, NOW, TTL)
    assert await store.take_lease(lease, NOW)
    later = NOW + TTL
    assert await store.renew_lease(replace(lease, until=later + TTL))
    assert not await store.take_lease(store.new_lease(FLOW_ID, later, TTL), later)

    impostor = replace(store.new_lease(FLOW_ID, NOW, TTL), until=later + 2 * TTL)
    assert not await store.renew_lease(impostor)
    assert not await store.release_lease(impostor)
    assert await store.release_lease(lease)
    assert await store.take_lease(store.new_lease(FLOW_ID, later, TTL), later)


async def test_claiming_a_flow_takes_its_lease_in_the_same_step(store: Store, redis: Redis) -> None:
    flow = FlowRecord.new(
        kind="connect", session="s", language="en", now=NOW, lifetime=timedelta(minutes=30)
    )
    await store.create_flow(flow)
    lease = store.new_lease(flow.flow_id, NOW, TTL)
    claimed = flow.next(status="authorizing")

    assert await store.replace_flow(flow.version, claimed, lease=lease)
    assert not await store.take_lease(store.new_lease(flow.flow_id, NOW, TTL), NOW)
    # A claim that loses the compare-and-set takes no lease either.
    loser = store.new_lease(flow.flow_id, NOW, TTL)
    assert not await store.replace_flow(flow.version, claimed, lease=loser)
    assert not await store.release_lease(loser)
    assert await redis.exists(flow_key(flow.flow_id), lease_key(flow.flow_id)) == 2
