"""A native app's OAuth through the system browser, with the PKCE-bound handoff (issue 15).

The "app" and the "system browser" are two real HTTP clients with separate cookie jars; the BFF
runs as two `flinks-bff serve` processes sharing one Redis (the app calls one replica, the
browser's callback lands on the other, the redeem goes to either), talking to the sandbox over
HTTP. Expiry (a short BFF_HANDOFF_TTL) and jwt mode run the BFF in process with their own
settings.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager

import httpx
import pytest
from asgi_lifespan import LifespanManager
from redis.asyncio import Redis

from app.main import create_app
from app.settings import Settings
from app.store import PREFIX
from tests.conftest import asgi_client
from tests.integration.conftest import ANSWERS, Sandbox, bff_settings
from tests.integration.link_steps import bearer, jwt_settings
from tests.integration.native_steps import (
    RETURN_URL,
    Handoff,
    Pkce,
    Seen,
    app_return,
    assert_refused,
    callback,
    handed_off,
    redeem,
    replica_env,
    start,
)
from tests.integration.oauth_steps import bank_login
from tests.integration.servers import bff_processes
from tests.sandbox.server import SandboxHandle
from tests.waiting import wait_until_async

RACE = 50
# A fresh connection for every request: `flinks-bff serve` closes an idle one after 5 s, and a
# pooled connection may be closed just as a request lands on a loaded machine (as in
# test_oauth_hostile.py).
LIMITS = httpx.Limits(max_connections=RACE, max_keepalive_connections=0)


def handoff_key(flow_id: str) -> str:
    return f"{PREFIX}handoff:{{{flow_id}}}"


@pytest.fixture(scope="module")
def replicas(sandbox_handle: SandboxHandle, redis_url: str) -> Iterator[list[str]]:
    with bff_processes(replica_env(sandbox_handle, redis_url), count=2) as urls:
        yield urls


@pytest.fixture
def bff(replicas: list[str], redis: Redis, sandbox: Sandbox) -> list[str]:
    """The two replicas, with Redis flushed and the sandbox reset for this test."""
    return replicas


@pytest.fixture
def seen() -> Seen:
    return Seen()


@pytest.fixture
async def app(seen: Seen) -> AsyncIterator[httpx.AsyncClient]:
    """The native app's HTTP client: its own cookie jar (its session in session mode)."""
    async with httpx.AsyncClient(timeout=30, limits=LIMITS, event_hooks=seen.hooks()) as client:
        yield client


@pytest.fixture
async def browser(seen: Seen) -> AsyncIterator[httpx.AsyncClient]:
    """The system browser: a jar of its own, holding no cookie of the app's."""
    async with httpx.AsyncClient(timeout=30, limits=LIMITS, event_hooks=seen.hooks()) as client:
        yield client


@pytest.fixture
async def other_app() -> AsyncIterator[httpx.AsyncClient]:
    """Another person's app (another session)."""
    async with httpx.AsyncClient(timeout=30, limits=LIMITS) as client:
        yield client


def live_saved(call: dict[str, object], login_id: str) -> bool:
    return (call["login_id"], call["most_recent_cached"], call["save"]) == (login_id, False, True)


# -- the whole flow, across two replicas ---------------------------------------------------------


async def test_greatday_nomfa_links_through_the_handoff_across_two_replicas(
    bff: list[str],
    sandbox: Sandbox,
    redis: Redis,
    app: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    seen: Seen,
) -> None:
    a, b = bff
    handoff = await handed_off(app, browser, sandbox, start_on=a, callback_on=b)
    # The callback sealed the loginId and kept only the code's SHA-256; no /Authorize yet.
    assert await sandbox.authorize_calls() == []
    key = handoff_key(handoff.flow_id)
    assert await redis.get(key) == hashlib.sha256(handoff.code.encode()).hexdigest()
    assert 0 < await redis.ttl(key) <= 120
    assert len(handoff.code) == 43  # 256 bits, base64url
    assert not browser.cookies, "the system browser needs no cookie, and gets none"

    redeemed = await redeem(app, b, handoff.flow_id, handoff.code, handoff.pkce.verifier)
    assert redeemed.status_code == 200, redeemed.text
    flow = redeemed.json()
    assert (flow["flow_id"], flow["kind"], flow["status"]) == (
        handoff.flow_id,
        "oauth",
        "connected",
    )
    (call,) = await sandbox.authorize_calls()
    assert live_saved(call, handoff.login_id), call
    assert not await redis.exists(key)

    links = await app.get(f"{a}/v1/links")
    assert [link["link_id"] for link in links.json()["links"]] == [flow["link_id"]]
    assert (await app.get(f"{a}/v1/flows/{handoff.flow_id}")).json()["status"] == "connected"
    assert seen.texts
    assert not seen.shows(handoff.login_id)


async def test_greatday_continues_through_mfa_after_the_redeem(
    bff: list[str],
    sandbox: Sandbox,
    app: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    seen: Seen,
) -> None:
    a, b = bff
    handoff = await handed_off(
        app, browser, sandbox, start_on=b, callback_on=a, username="Greatday"
    )
    assert await sandbox.authorize_calls() == []
    redeemed = await redeem(app, a, handoff.flow_id, handoff.code, handoff.pkce.verifier)
    assert redeemed.status_code == 200, redeemed.text
    assert redeemed.json()["status"] == "mfa_required"
    prompt = redeemed.json()["mfa"]["challenges"][0]["prompt"]
    answered = await app.post(
        f"{b}/v1/flows/{handoff.flow_id}/mfa", json={"responses": {prompt: ANSWERS[prompt]}}
    )
    assert answered.status_code == 200, answered.text
    assert answered.json()["status"] == "connected"
    first, *_ = await sandbox.authorize_calls()
    assert live_saved(first, handoff.login_id), first
    assert not seen.shows(handoff.login_id)


async def test_one_code_redeemed_50_times_at_once_across_two_replicas_succeeds_once(
    bff: list[str], sandbox: Sandbox, app: httpx.AsyncClient, browser: httpx.AsyncClient
) -> None:
    handoff = await handed_off(app, browser, sandbox, start_on=bff[0], callback_on=bff[1])
    responses = await asyncio.gather(
        *(
            redeem(app, bff[i % 2], handoff.flow_id, handoff.code, handoff.pkce.verifier)
            for i in range(RACE)
        )
    )
    ok = [r for r in responses if r.status_code == 200]
    assert len(ok) == 1, [(r.status_code, r.text) for r in responses]
    assert ok[0].json()["status"] == "connected"
    for response in responses:
        if response.status_code != 200:
            assert_refused(response)
    assert len(await sandbox.authorize_calls()) == 1


# -- refusals: each 400 handoff_invalid, each burning the code it matched ------------------------


async def test_a_replayed_code_is_refused(
    bff: list[str], sandbox: Sandbox, app: httpx.AsyncClient, browser: httpx.AsyncClient
) -> None:
    handoff = await handed_off(app, browser, sandbox, start_on=bff[0], callback_on=bff[0])
    first = await redeem(app, bff[0], handoff.flow_id, handoff.code, handoff.pkce.verifier)
    assert first.status_code == 200, first.text
    assert_refused(await redeem(app, bff[1], handoff.flow_id, handoff.code, handoff.pkce.verifier))
    assert len(await sandbox.authorize_calls()) == 1


async def _burnt(app: httpx.AsyncClient, bff: str, handoff: Handoff, sandbox: Sandbox) -> None:
    """The right code and verifier from the right owner are refused now, and Flinks was never
    asked."""
    assert_refused(await redeem(app, bff, handoff.flow_id, handoff.code, handoff.pkce.verifier))
    assert await sandbox.authorize_calls() == []


@pytest.mark.parametrize(
    "verifier",
    [
        pytest.param(lambda handoff: Pkce.new().verifier, id="wrong"),
        pytest.param(lambda handoff: handoff.pkce.verifier[:42], id="too-short"),
        pytest.param(lambda handoff: handoff.pkce.verifier + "!", id="bad-character"),
        pytest.param(lambda handoff: handoff.pkce.challenge, id="the-challenge-itself"),
    ],
)
async def test_a_wrong_or_malformed_verifier_is_refused_and_burns_the_code(
    bff: list[str],
    sandbox: Sandbox,
    app: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    verifier: Callable[[Handoff], str],
) -> None:
    handoff = await handed_off(app, browser, sandbox, start_on=bff[0], callback_on=bff[1])
    assert_refused(await redeem(app, bff[1], handoff.flow_id, handoff.code, verifier(handoff)))
    await _burnt(app, bff[0], handoff, sandbox)


async def test_the_verifier_of_another_flow_is_refused_and_burns_the_code(
    bff: list[str], sandbox: Sandbox, app: httpx.AsyncClient, browser: httpx.AsyncClient
) -> None:
    mine = await handed_off(app, browser, sandbox, start_on=bff[0], callback_on=bff[1])
    other = await handed_off(app, browser, sandbox, start_on=bff[1], callback_on=bff[0])
    assert_refused(await redeem(app, bff[0], mine.flow_id, mine.code, other.pkce.verifier))
    await _burnt(app, bff[1], mine, sandbox)


@pytest.mark.parametrize("who", ["another-session", "no-session"])
async def test_another_owner_is_refused_and_burns_the_code(
    bff: list[str],
    sandbox: Sandbox,
    app: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    other_app: httpx.AsyncClient,
    who: str,
) -> None:
    handoff = await handed_off(app, browser, sandbox, start_on=bff[0], callback_on=bff[1])
    if who == "another-session":  # a session of its own, from a flow of its own
        own = await start(other_app, bff[1], Pkce.new())
        assert own.status_code == 201, own.text
        assert other_app.cookies
    stolen = await redeem(other_app, bff[1], handoff.flow_id, handoff.code, handoff.pkce.verifier)
    assert_refused(stolen)
    await _burnt(app, bff[0], handoff, sandbox)


async def test_a_code_from_another_flow_is_refused_and_burns_neither(
    bff: list[str], sandbox: Sandbox, app: httpx.AsyncClient, browser: httpx.AsyncClient
) -> None:
    first = await handed_off(app, browser, sandbox, start_on=bff[0], callback_on=bff[1])
    second = await handed_off(app, browser, sandbox, start_on=bff[0], callback_on=bff[1])
    assert_refused(await redeem(app, bff[0], second.flow_id, first.code, second.pkce.verifier))
    assert await sandbox.authorize_calls() == []
    # A code that matched nothing burnt nothing: guessing cannot spoil someone's handoff.
    for handoff in (second, first):
        done = await redeem(app, bff[1], handoff.flow_id, handoff.code, handoff.pkce.verifier)
        assert done.status_code == 200, done.text
        assert done.json()["status"] == "connected"


async def test_a_browser_flow_has_no_handoff_and_its_callback_still_needs_its_cookie(
    bff: list[str], sandbox: Sandbox, app: httpx.AsyncClient, browser: httpx.AsyncClient
) -> None:
    started = await start(app, bff[0], None)  # no challenge: a browser flow, bound to the jar
    assert started.status_code == 201, started.text
    flow_id = started.json()["flow_id"]
    code, verifier = secrets.token_urlsafe(32), Pkce.new().verifier
    assert_refused(await redeem(app, bff[1], flow_id, code, verifier))

    bank = await bank_login(sandbox.http, started.json()["authorize_url"], "greatday_nomfa")
    # Without the cookie of the client that started it, the state is refused (and not used up).
    assert (await callback(browser, bff[1], bank.path_and_query)).status_code == 403
    query = app_return(await callback(app, bff[1], bank.path_and_query))
    assert query == {"flow_id": [flow_id], "status": ["connected"]}
    assert_refused(await redeem(app, bff[0], flow_id, code, verifier))
    assert len(await sandbox.authorize_calls()) == 1


async def test_a_native_state_is_consumed_once(
    bff: list[str],
    sandbox: Sandbox,
    app: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    redis: Redis,
) -> None:
    handoff = await handed_off(app, browser, sandbox, start_on=bff[0], callback_on=bff[1])
    for client, replica in ((browser, bff[0]), (browser, bff[1]), (app, bff[1])):
        again = await callback(client, replica, handoff.callback_path)
        assert again.status_code == 403, again.text
    # The code the first callback made is still the only one, and still works.
    assert await redis.get(handoff_key(handoff.flow_id)) == (
        hashlib.sha256(handoff.code.encode()).hexdigest()
    )
    done = await redeem(app, bff[0], handoff.flow_id, handoff.code, handoff.pkce.verifier)
    assert done.status_code == 200, done.text


async def test_a_bank_refusal_returns_failed_and_no_code(
    bff: list[str], sandbox: Sandbox, app: httpx.AsyncClient, browser: httpx.AsyncClient
) -> None:
    pkce = Pkce.new()
    started = await start(app, bff[0], pkce)
    assert started.status_code == 201, started.text
    flow_id = started.json()["flow_id"]
    bank = await bank_login(sandbox.http, started.json()["authorize_url"], "Greatday", deny=True)
    query = app_return(await callback(browser, bff[1], bank.path_and_query))
    assert set(query) == {"flow_id", "status", "error"}, query
    assert (query["flow_id"], query["status"]) == ([flow_id], ["failed"])
    assert_refused(await redeem(app, bff[0], flow_id, secrets.token_urlsafe(32), pkce.verifier))
    assert await sandbox.authorize_calls() == []


async def test_a_login_owned_by_another_user_is_refused_at_the_redeem(
    bff: list[str],
    sandbox: Sandbox,
    app: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    other_app: httpx.AsyncClient,
) -> None:
    mine = await handed_off(app, browser, sandbox, start_on=bff[0], callback_on=bff[1])
    done = await redeem(app, bff[0], mine.flow_id, mine.code, mine.pkce.verifier)
    assert done.status_code == 200, done.text
    theirs = await handed_off(other_app, browser, sandbox, start_on=bff[1], callback_on=bff[0])
    assert theirs.login_id == mine.login_id
    answer = await redeem(other_app, bff[1], theirs.flow_id, theirs.code, theirs.pkce.verifier)
    assert answer.status_code == 409, answer.text
    assert answer.json()["code"] == "login_owned_elsewhere"
    assert len(await sandbox.authorize_calls()) == 1


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"code_challenge_method": "plain"}, id="plain"),
        pytest.param({"code_challenge_method": "s256"}, id="lowercase-method"),
        pytest.param({"code_challenge_method": None}, id="no-method"),
        pytest.param({"code_challenge": None}, id="method-without-challenge"),
        pytest.param({"code_challenge": "A" * 42}, id="too-short"),
        pytest.param({"code_challenge": "A" * 129}, id="too-long"),
        pytest.param({"code_challenge": "A" * 42 + "="}, id="padded"),
        pytest.param({"code_challenge": "A" * 42 + "+"}, id="not-base64url"),
    ],
)
async def test_start_refuses_anything_but_an_s256_challenge(
    bff: list[str],
    sandbox: Sandbox,
    app: httpx.AsyncClient,
    redis: Redis,
    fields: dict[str, object],
) -> None:
    assert_refused(await start(app, bff[0], Pkce.new(), fields=fields))
    assert [key async for key in redis.scan_iter(f"{PREFIX}flow:*")] == []
    assert await sandbox.calls("OAuthAuthorize") == []


# -- in process: a short handoff TTL, and jwt mode -----------------------------------------------


@asynccontextmanager
async def app_and_browser(
    settings: Settings, seen: Seen
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """The BFF in process (lifespan running), and two clients with jars of their own."""
    async with (
        LifespanManager(create_app(settings)) as manager,
        asgi_client(manager.app) as app_client,
        asgi_client(manager.app) as browser_client,
    ):
        app_client.event_hooks = browser_client.event_hooks = seen.hooks()
        yield app_client, browser_client


async def test_an_expired_code_is_refused(
    redis_url: str, redis: Redis, sandbox: Sandbox, seen: Seen
) -> None:
    settings = bff_settings(redis_url, sandbox, BFF_RETURN_URLS=RETURN_URL, BFF_HANDOFF_TTL=10)
    async with app_and_browser(settings, seen) as (app_client, browser_client):
        handoff = await handed_off(app_client, browser_client, sandbox, start_on="", callback_on="")
        key = handoff_key(handoff.flow_id)
        assert 0 < await redis.ttl(key) <= 10  # Redis expires it (EX), on its own clock

        async def gone() -> bool:
            return not await redis.exists(key)

        await wait_until_async(gone, what="the handoff code to expire", interval=0.2)
        redeemed = await redeem(
            app_client, "", handoff.flow_id, handoff.code, handoff.pkce.verifier
        )
        assert_refused(redeemed)
    assert await sandbox.authorize_calls() == []


async def test_jwt_mode_the_apps_bearer_starts_and_redeems_another_sub_is_refused(
    redis_url: str, redis: Redis, sandbox: Sandbox, seen: Seen
) -> None:
    settings = bff_settings(redis_url, sandbox, BFF_RETURN_URLS=RETURN_URL, **jwt_settings(sandbox))
    alice, bob = await bearer(sandbox, "alice"), await bearer(sandbox, "bob")
    async with app_and_browser(settings, seen) as (app_client, browser_client):
        stolen = await handed_off(
            app_client, browser_client, sandbox, start_on="", callback_on="", headers=alice
        )
        mine = await handed_off(
            app_client, browser_client, sandbox, start_on="", callback_on="", headers=alice
        )
        app_client.cookies.clear()  # the bearer alone is the app's identity
        assert_refused(
            await redeem(
                app_client, "", stolen.flow_id, stolen.code, stolen.pkce.verifier, headers=bob
            )
        )
        burnt = await redeem(
            app_client, "", stolen.flow_id, stolen.code, stolen.pkce.verifier, headers=alice
        )
        assert_refused(burnt)
        assert await sandbox.authorize_calls() == []
        done = await redeem(
            app_client, "", mine.flow_id, mine.code, mine.pkce.verifier, headers=alice
        )
        assert done.status_code == 200, done.text
        assert done.json()["status"] == "connected"
        links = await app_client.get("/v1/links", headers=alice)
        assert [link["link_id"] for link in links.json()["links"]] == [done.json()["link_id"]]
    (call,) = await sandbox.authorize_calls()
    assert live_saved(call, mine.login_id), call
    assert not seen.shows(mine.login_id)
