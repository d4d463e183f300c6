from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from app.errors import StoreUnavailable
from app.flows import FlowKind, FlowRecord
from app.flows.records import NATIVE_BINDING
from app.flows.service import STATE, new_state
from app.store import (
    PREFIX,
    Sealer,
    Store,
    close_redis,
    connect_redis,
    flow_key,
    login_key,
    state_binding,
    state_key,
)

SESSION = secrets.token_urlsafe(32)


def new_flow(kind: FlowKind, institution: str | None = None) -> FlowRecord:
    return FlowRecord.new(
        kind=kind,
        session=SESSION,
        language="en",
        now=datetime.now(UTC),
        lifetime=timedelta(seconds=60),
        institution=institution,
    )


@pytest.fixture
async def store(redis_url: str, redis: Redis) -> AsyncIterator[Store]:
    client = connect_redis(redis_url)
    yield Store(
        client, encryption_key=secrets.token_bytes(32), flow_ttl=60, state_ttl=30, login_ttl=90
    )
    await close_redis(client)


async def test_a_new_flow_and_its_state_are_written_with_their_ttls(
    store: Store, redis: Redis
) -> None:
    flow = new_flow("oauth", institution="FlinksCapital")
    state = new_state(flow.flow_id)
    assert STATE.fullmatch(state)
    assert len(state) <= 64  # what the callback reads of it (app/api/oauth.py)
    await store.create_flow(flow, state=state, session=SESSION)
    assert 60 < await redis.ttl(flow_key(flow.flow_id)) <= 60 + 900
    # In the flow's own slot (its hash tag), holding the state bound to the session.
    assert state_key(flow.flow_id) == f"{PREFIX}state:{{{flow.flow_id}}}"
    assert 0 < await redis.ttl(state_key(flow.flow_id)) <= 30
    assert await redis.get(state_key(flow.flow_id)) == state_binding(state, SESSION)
    # The raw state is in no key or value, the owner in no key (the flow record names its
    # owner: not a credential, the session cookie's id is what authenticates, app/flows).
    keys = [key async for key in redis.scan_iter(f"{PREFIX}*")]
    dump = " ".join(keys) + " ".join([str(await redis.get(k)) for k in keys])
    assert state not in dump
    assert state.partition(".")[2] not in dump
    assert SESSION not in " ".join(keys)


async def test_a_state_must_name_its_flow(store: Store) -> None:
    flow = new_flow("oauth")
    with pytest.raises(ValueError, match="names its flow"):
        await store.create_flow(flow, state=new_state(new_flow("oauth").flow_id), session=SESSION)
    with pytest.raises(ValueError, match="bound to a session"):
        await store.create_flow(flow, state=new_state(flow.flow_id), session="")
    assert await store.get_flow(flow.flow_id) is None


async def test_state_is_single_use_and_bound_to_the_session(store: Store, redis: Redis) -> None:
    flow = new_flow("oauth")
    state = new_state(flow.flow_id)
    await store.create_flow(flow, state=state, session=SESSION)
    other_session = secrets.token_urlsafe(32)
    # Another browser's session (or the native binding) neither consumes nor burns it.
    assert await store.consume_state(state, [other_session, NATIVE_BINDING]) is None
    assert await redis.exists(state_key(flow.flow_id))
    # A forged secret for the same flow does not either.
    forged = f"{flow.flow_id}.{new_state(flow.flow_id).partition('.')[2]}"
    assert await store.consume_state(forged, [SESSION]) is None
    consumed = await store.consume_state(state, [SESSION, NATIVE_BINDING])
    assert consumed == (SESSION, flow)
    assert await store.consume_state(state, [SESSION]) is None
    assert await store.consume_state("no-dot-in-it", [SESSION]) is None


async def test_a_native_state_is_bound_to_the_native_binding(store: Store) -> None:
    flow = new_flow("oauth")
    state = new_state(flow.flow_id)
    await store.create_flow(flow, state=state, session=NATIVE_BINDING)
    assert await store.consume_state(state, [SESSION, NATIVE_BINDING]) == (NATIVE_BINDING, flow)


async def test_a_state_whose_flow_is_gone_is_consumed_with_no_flow(
    store: Store, redis: Redis
) -> None:
    flow = new_flow("oauth")
    state = new_state(flow.flow_id)
    await store.create_flow(flow, state=state, session=SESSION)
    await redis.delete(flow_key(flow.flow_id))
    assert await store.consume_state(state, [SESSION]) == (SESSION, None)
    assert not await redis.exists(state_key(flow.flow_id))


async def test_concurrent_consumers_of_one_state_see_exactly_one_win(store: Store) -> None:
    flow = new_flow("oauth")
    state = new_state(flow.flow_id)
    await store.create_flow(flow, state=state, session=SESSION)
    results = await asyncio.gather(*(store.consume_state(state, [SESSION]) for _ in range(50)))
    assert [r for r in results if r is not None] == [(SESSION, flow)]


async def test_compare_and_set_lets_one_writer_win_and_stores_the_login_encrypted(
    store: Store, redis: Redis
) -> None:
    flow = new_flow("connect")
    await store.create_flow(flow)
    login_id = str(uuid.uuid4())
    claims = [flow.next(status="authorizing") for _ in range(20)]
    wins = await asyncio.gather(
        *(store.replace_flow(flow.version, c, login_id=login_id) for c in claims)
    )
    assert wins.count(True) == 1
    stored = await store.get_flow(flow.flow_id)
    assert stored is not None
    assert (stored.status, stored.version) == ("authorizing", 1)
    raw = await redis.get(login_key(flow.flow_id))
    assert raw is not None
    assert login_id not in raw
    assert 0 < await redis.ttl(login_key(flow.flow_id)) <= 90
    assert await store.get_login_id(flow.flow_id) == login_id
    # A transition keeps the flow's TTL rather than extending or dropping it.
    assert await redis.ttl(flow_key(flow.flow_id)) > 0


async def test_compare_and_set_on_a_vanished_flow_fails(store: Store) -> None:
    flow = new_flow("connect")
    assert await store.replace_flow(0, flow.next(status="failed")) is False


async def test_every_key_has_a_ttl(store: Store, redis: Redis) -> None:
    for _ in range(3):
        flow = new_flow("oauth")
        await store.create_flow(flow, state=new_state(flow.flow_id), session=SESSION)
        await store.replace_flow(0, flow.next(status="authorizing"), login_id=str(uuid.uuid4()))
    keys = [key async for key in redis.scan_iter(f"{PREFIX}*")]
    assert len(keys) == 9
    assert all([await redis.ttl(key) > 0 for key in keys])


def test_sealed_values_are_bound_to_their_context_and_key() -> None:
    sealer = Sealer(secrets.token_bytes(32))
    sealed = sealer.seal("secret-value", "ctx-a")
    assert "secret-value" not in sealed
    assert sealer.open(sealed, "ctx-a") == "secret-value"
    assert sealer.open(sealed, "ctx-b") is None
    assert Sealer(secrets.token_bytes(32)).open(sealed, "ctx-a") is None
    assert sealer.open("v1.not-base64!", "ctx-a") is None
    assert sealer.open(sealed[:-4], "ctx-a") is None
    assert sealer.seal("x", "c") != sealer.seal("x", "c")  # fresh nonce each time


async def test_an_unreachable_server_raises_store_unavailable_quickly() -> None:
    client = connect_redis("redis://127.0.0.1:1/0")
    store = Store(
        client, encryption_key=secrets.token_bytes(32), flow_ttl=1, state_ttl=1, login_ttl=1
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(StoreUnavailable):
        await store.get_flow("x" * 22)
    assert loop.time() - started < 2.5
    await close_redis(client)


async def test_moving_a_session_keeps_its_owner_under_the_new_id_only(store: Store) -> None:
    await store.create_session("old-id", "owner-1", 60)
    assert await store.move_session("old-id", "new-id", "owner-1", 60)
    assert await store.session_owner("new-id") == "owner-1"
    assert await store.session_owner("old-id") is None


async def test_of_two_racing_moves_one_wins_and_the_loser_leaves_no_session(store: Store) -> None:
    await store.create_session("old-id", "owner-1", 60)
    won, lost = await asyncio.gather(
        store.move_session("old-id", "new-a", "owner-1", 60),
        store.move_session("old-id", "new-b", "owner-1", 60),
    )
    assert sorted([won, lost]) == [False, True]
    winner, loser = ("new-a", "new-b") if won else ("new-b", "new-a")
    assert await store.session_owner(winner) == "owner-1"
    assert await store.session_owner(loser) is None
    assert await store.session_owner("old-id") is None


async def test_a_session_that_is_gone_or_another_owners_is_not_moved(store: Store) -> None:
    assert not await store.move_session("never-issued", "new-a", "owner-1", 60)
    assert await store.session_owner("new-a") is None
    await store.create_session("theirs", "owner-2", 60)
    assert not await store.move_session("theirs", "new-b", "owner-1", 60)
    assert await store.session_owner("new-b") is None
