"""A loginId belongs to the first owner whose flow connected it: another owner presenting it
(Connect complete, OAuth callback) gets 409 `login_owned_elsewhere` and no /Authorize, in one
process, across two `flinks-bff serve` replicas on one Redis, and in jwt mode with the sandbox's
dev issuer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from redis.asyncio import Redis

from app.main import create_app
from app.store import PREFIX
from tests.conftest import serve_in_process
from tests.integration.conftest import Sandbox, bff_process_env, bff_settings
from tests.integration.connect_steps import complete, start, status
from tests.integration.link_steps import bearer, connect, jwt_settings
from tests.integration.oauth_steps import bank_login
from tests.integration.servers import bff_processes


async def _owners(redis: Redis) -> set[str]:
    """Every owner a browser session stands for (the values of the session keys)."""
    return {str(await redis.get(key)) async for key in redis.scan_iter(f"{PREFIX}session:*")}


async def _authorizes_of(sandbox: Sandbox, login_id: str) -> int:
    return sum(call["login_id"] == login_id for call in await sandbox.authorize_calls())


def _assert_owned_elsewhere(response: httpx.Response) -> None:
    assert response.status_code == 409, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "login_owned_elsewhere"


async def test_another_owner_completing_connect_with_a_linked_login_id_is_refused(
    client: httpx.AsyncClient,
    other_browser: httpx.AsyncClient,
    sandbox: Sandbox,
    redis: Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    linked = await connect(client, sandbox)
    started = await start(other_browser)
    with caplog.at_level(logging.DEBUG):
        refused = await complete(other_browser, started["flow_id"], linked.login_id)
    _assert_owned_elsewhere(refused)
    assert linked.login_id not in refused.text
    assert await _authorizes_of(sandbox, linked.login_id) == 1  # the first owner's only

    flow = await status(other_browser, started["flow_id"])
    assert flow["status"] == "failed"
    assert flow["error"]["code"] == "login_owned_elsewhere"
    assert flow["link_id"] is None
    assert (await other_browser.get("/v1/links")).json() == {"links": []}
    # The first owner keeps the link.
    (kept,) = (await client.get("/v1/links")).json()["links"]
    assert kept["link_id"] == linked.link_id

    # The security log line says it happened, naming neither the loginId nor either owner.
    owners = await _owners(redis)
    assert len(owners) == 2
    (line,) = [r for r in caplog.records if r.getMessage() == "security.login_owned_elsewhere"]
    assert line.levelno == logging.WARNING
    for record in caplog.records:
        logged = f"{record.getMessage()} {record.args!r} {vars(record)!r}"
        for secret in (linked.login_id, linked.login_id.upper(), *owners):
            assert secret not in logged, (secret, record.getMessage())


async def test_another_owner_reusing_its_own_oauth_state_with_a_linked_login_id_is_refused(
    client: httpx.AsyncClient, other_browser: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    """The attack of issue 14: deny at the bank, then send the callback with the own state and
    the victim's loginId."""
    linked = await connect(client, sandbox)
    started = await other_browser.post("/v1/oauth/sessions", json={"institution": "FlinksCapital"})
    assert started.status_code == 201, started.text
    flow_id = started.json()["flow_id"]
    denied = await bank_login(
        sandbox.http, started.json()["authorize_url"], "greatday_nomfa", deny=True
    )
    assert denied.login_id is None

    forged = await other_browser.get(
        "/v1/oauth/callback", params={"state": denied.state, "loginId": linked.login_id}
    )
    _assert_owned_elsewhere(forged)
    assert await _authorizes_of(sandbox, linked.login_id) == 1
    flow = await status(other_browser, flow_id)
    assert (flow["status"], flow["error"]["code"]) == ("failed", "login_owned_elsewhere")
    assert (await other_browser.get("/v1/links")).json() == {"links": []}
    # A person mid-navigation gets a page that says so (the state is spent by now: 403).
    again = await other_browser.get(
        "/v1/oauth/callback",
        params={"state": denied.state, "loginId": linked.login_id},
        headers={"Accept": "text/html"},
    )
    assert again.status_code == 403
    assert await _authorizes_of(sandbox, linked.login_id) == 1


async def test_the_oauth_callback_page_for_a_linked_login_id_says_so(
    client: httpx.AsyncClient, other_browser: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    linked = await connect(client, sandbox)
    started = await other_browser.post("/v1/oauth/sessions", json={"institution": "FlinksCapital"})
    denied = await bank_login(
        sandbox.http, started.json()["authorize_url"], "greatday_nomfa", deny=True
    )
    page = await other_browser.get(
        "/v1/oauth/callback",
        params={"state": denied.state, "loginId": linked.login_id},
        headers={"Accept": "text/html"},
    )
    assert page.status_code == 409
    assert page.headers["content-type"].startswith("text/html")
    assert "linked by another user" in page.text
    assert linked.login_id not in page.text
    assert await _authorizes_of(sandbox, linked.login_id) == 1


async def test_the_same_owner_relinking_a_login_id_keeps_one_link(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    first = await connect(client, sandbox)
    created_at = (await client.get(f"/v1/links/{first.link_id}")).json()["created_at"]
    second = await connect(client, sandbox, login_id=first.login_id)
    assert second.link_id == first.link_id
    (link,) = (await client.get("/v1/links")).json()["links"]
    assert link["link_id"] == first.link_id
    assert link["created_at"] == created_at
    assert await _authorizes_of(sandbox, first.login_id) == 2
    # A login of another user is a link of its own.
    other = await connect(client, sandbox, "Greatday")
    assert other.link_id != first.link_id
    assert len((await client.get("/v1/links")).json()["links"]) == 2


async def _race(
    a: httpx.AsyncClient, b: httpx.AsyncClient, login_id: str
) -> tuple[list[httpx.Response], list[str]]:
    """Both owners start a flow, then complete it with one loginId at the same moment."""
    flows = [(await start(a))["flow_id"], (await start(b))["flow_id"]]
    responses = list(
        await asyncio.gather(complete(a, flows[0], login_id), complete(b, flows[1], login_id))
    )
    return responses, flows


def _one_won(responses: list[httpx.Response]) -> int:
    """The index of the owner that connected; the other was refused."""
    codes = [r.status_code for r in responses]
    assert sorted(codes) == [200, 409], [r.text for r in responses]
    winner = codes.index(200)
    assert responses[winner].json()["status"] == "connected"
    _assert_owned_elsewhere(responses[1 - winner])
    return winner


async def test_two_owners_racing_on_one_fresh_login_id_connect_exactly_one(
    client: httpx.AsyncClient, other_browser: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    browsers = [client, other_browser]
    for username in ("greatday_nomfa", "Greatday", "test_mfa_image"):
        login_id = await sandbox.issue_login(username)
        responses, flows = await _race(client, other_browser, login_id)
        winner = _one_won(responses)
        assert await _authorizes_of(sandbox, login_id) == 1
        loser = browsers[1 - winner]
        assert (await status(loser, flows[1 - winner]))["status"] == "failed"
        won = await status(browsers[winner], flows[winner])
        links = (await browsers[winner].get("/v1/links")).json()["links"]
        assert won["link_id"] in [link["link_id"] for link in links]
        assert won["link_id"] not in str((await loser.get("/v1/links")).json())


async def test_two_owners_racing_across_two_replicas_connect_exactly_one(
    redis_url: str, redis: Redis, sandbox: Sandbox
) -> None:
    env = bff_process_env(redis_url, sandbox)
    with bff_processes(env, count=2) as urls:
        async with (
            httpx.AsyncClient(base_url=urls[0], timeout=30) as a,
            httpx.AsyncClient(base_url=urls[1], timeout=30) as b,
        ):
            for username, language in (
                ("greatday_nomfa", "en"),
                ("greatday_nomfa", "fr"),
                ("Greatday", "en"),
                ("Greatday", "fr"),
            ):
                issued = await sandbox.http.post(
                    "/__sandbox/logins", json={"username": username, "language": language}
                )
                login_id = issued.json()["login_id"]
                responses, _ = await _race(a, b, login_id)
                _one_won(responses)
                assert await _authorizes_of(sandbox, login_id) == 1
            # The winner of each round sees its links on either replica.
            seen = [len((await browser.get("/v1/links")).json()["links"]) for browser in (a, b)]
            assert sum(seen) == 4
            moved = httpx.AsyncClient(base_url=urls[1], cookies=a.cookies, timeout=30)
            async with moved:
                assert len((await moved.get("/v1/links")).json()["links"]) == seen[0]


# -- jwt mode ----------------------------------------------------------------------------------


@pytest.fixture
async def jwt_app(
    redis_url: str, redis: Redis, sandbox: Sandbox
) -> AsyncIterator[httpx.AsyncClient]:
    settings = bff_settings(redis_url, sandbox, **jwt_settings(sandbox))
    async with serve_in_process(create_app(settings)) as client:
        yield client


async def test_jwt_users_own_their_links_flows_and_data(
    jwt_app: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    alice, bob = await bearer(sandbox, "alice"), await bearer(sandbox, "bob")
    transport, base = jwt_app._transport, str(jwt_app.base_url)
    # Each user in a browser of their own (the session cookie a flow start issues is theirs).
    async with (
        httpx.AsyncClient(transport=transport, base_url=base, headers=alice) as a,
        httpx.AsyncClient(transport=transport, base_url=base, headers=bob) as b,
    ):
        linked = await connect(a, sandbox)
        (link,) = (await a.get("/v1/links")).json()["links"]
        assert link["link_id"] == linked.link_id
        assert (await a.get(f"/v1/links/{linked.link_id}/accounts")).status_code == 202

        assert (await b.get("/v1/links")).json() == {"links": []}
        path = f"/v1/links/{linked.link_id}"
        for response in (
            await b.get(path),
            await b.get(f"{path}/accounts"),
            await b.get(f"{path}/transactions"),
            await b.delete(path),
        ):
            assert response.status_code == 404, response.text
            assert response.json()["code"] == "link_not_found"
        flow = await b.get(f"/v1/flows/{linked.flow_id}")
        assert flow.status_code == 404
        assert flow.json()["code"] == "flow_not_found"

        started = await start(b)
        _assert_owned_elsewhere(await complete(b, started["flow_id"], linked.login_id))
        assert await _authorizes_of(sandbox, linked.login_id) == 1
        assert (await status(b, started["flow_id"]))["error"]["code"] == "login_owned_elsewhere"
        assert await sandbox.calls("DeleteCard") == []
        # Alice's bearer from a fresh browser (no cookie) still finds her link.
        async with httpx.AsyncClient(transport=transport, base_url=base, headers=alice) as fresh:
            assert (await fresh.get(path)).status_code == 200


async def test_jwt_mode_without_a_bearer_is_unauthenticated(
    jwt_app: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    async with httpx.AsyncClient(
        transport=jwt_app._transport,
        base_url=str(jwt_app.base_url),
        headers=await bearer(sandbox, "alice"),
    ) as alice:
        linked = await connect(alice, sandbox)
    for request in (
        jwt_app.get("/v1/links"),
        jwt_app.get(f"/v1/links/{linked.link_id}"),
        jwt_app.get(f"/v1/links/{linked.link_id}/accounts"),
        jwt_app.delete(f"/v1/links/{linked.link_id}"),
        jwt_app.post("/v1/connect/sessions", json={}),
        jwt_app.get(f"/v1/flows/{linked.flow_id}"),
        jwt_app.get("/v1/links", headers={"Authorization": "Bearer not-a-jwt"}),
    ):
        response = await request
        assert response.status_code == 401, response.text
        assert response.json()["code"] == "unauthenticated"
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert await sandbox.calls("DeleteCard") == []
