"""Links end to end: a connected flow files a link, its account data comes from the sandbox over
HTTP (202 while Flinks prepares it, then 200), transactions page by cursor, and DELETE calls
DeleteCard once. Session mode; the BFF in process, flows and links in a real Redis."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from app.main import create_app
from app.sandbox import data as sandbox_data
from tests.conftest import serve_in_process
from tests.integration.conftest import Sandbox, bff_settings
from tests.integration.connect_steps import answer_until_connected, complete, start, status
from tests.integration.link_steps import (
    ACCOUNT_FIELDS,
    CONNECTING_USERS,
    LINK_FIELDS,
    TRANSACTION_FIELDS,
    accounts_when_ready,
    all_transactions,
    connect,
    short_poll_gap,
)

# What the sandbox knows of the holder and the accounts, none of which a browser may see.
HOLDER_VALUES = (
    sandbox_data.HOLDER["Name"],
    sandbox_data.HOLDER["Email"],
    sandbox_data.HOLDER["PhoneNumber"],
    sandbox_data.HOLDER["Address"]["CivicAddress"],
    sandbox_data.HOLDER["Address"]["PostalCode"],
)
ACCOUNT_NUMBERS = tuple(a.account_number for a in sandbox_data.ACCOUNTS)


@pytest.fixture
async def quick(
    redis_url: str, redis: Redis, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    """The BFF with a short poll gap, so a test can wait out Flinks' preparation."""
    short_poll_gap(monkeypatch)
    async with serve_in_process(create_app(bff_settings(redis_url, sandbox))) as client:
        yield client


async def _data_calls(sandbox: Sandbox) -> list[tuple[str, int]]:
    calls = await sandbox.calls("GetAccountsDetail") + await sandbox.calls("GetAccountsDetailAsync")
    return [(c["endpoint"], c["status"]) for c in sorted(calls, key=lambda c: c["seq"])]


def _assert_browser_safe(response: httpx.Response, login_id: str) -> None:
    """No holder, no full account number, no loginId in what the browser gets. The ids are left
    out of the search: random UUIDs, they could hold any short run of digits."""
    assert login_id not in response.text
    body = response.json()
    for account in body["accounts"]:
        assert account.pop("account_id") != login_id
    shown = json.dumps(body)
    for value in (*HOLDER_VALUES, *ACCOUNT_NUMBERS):
        assert value not in shown, f"{value!r} reached the browser"


def _iso(value: str) -> datetime:
    return datetime.fromisoformat(value)


# -- links -------------------------------------------------------------------------------------


async def test_a_connected_flow_files_a_link_the_owner_lists_and_reads(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    assert (await client.get("/v1/links")).json() == {"links": []}  # no session yet
    linked = await connect(client, sandbox)
    flow = await status(client, linked.flow_id)
    assert (flow["status"], flow["link_id"]) == ("connected", linked.link_id)
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", linked.link_id)

    listed = await client.get("/v1/links")
    assert listed.status_code == 200
    (link,) = listed.json()["links"]
    assert set(link) == LINK_FIELDS
    assert link["link_id"] == linked.link_id
    assert link["institution"] == "FlinksCapital"
    assert link["status"] == "active"
    assert _iso(link["created_at"]) <= _iso(link["refreshed_at"])
    one = await client.get(f"/v1/links/{linked.link_id}")
    assert one.status_code == 200
    assert one.json() == link
    for response in (listed, one):
        assert linked.login_id not in response.text
        assert response.headers["cache-control"] == "no-store"


async def test_an_unknown_or_malformed_link_id_is_not_found_or_refused(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    await connect(client, sandbox)
    unknown = await client.get("/v1/links/" + "A" * 22)
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "link_not_found"
    assert (await client.get("/v1/links/not-an-id")).status_code == 422


# -- accounts ----------------------------------------------------------------------------------


async def test_accounts_are_pending_first_and_a_read_within_the_gap_asks_flinks_nothing(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    """The default app: Flinks' 10-second gap, which no step of this test waits out."""
    linked = await connect(client, sandbox)
    first = await client.get(f"/v1/links/{linked.link_id}/accounts")
    assert first.status_code == 202, first.text
    assert first.json() == {"status": "pending"}
    assert first.headers["retry-after"] == "10"
    assert await _data_calls(sandbox) == [("GetAccountsDetail", 202)]

    second = await client.get(f"/v1/links/{linked.link_id}/accounts")
    assert second.status_code == 202
    assert second.json() == {"status": "pending"}
    assert 1 <= int(second.headers["retry-after"]) <= 10
    transactions = await client.get(f"/v1/links/{linked.link_id}/transactions")
    assert transactions.status_code == 202
    assert transactions.json() == {"status": "pending"}
    assert await _data_calls(sandbox) == [("GetAccountsDetail", 202)]


async def test_after_the_gap_the_async_endpoint_delivers_the_accounts(
    quick: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    linked = await connect(quick, sandbox)
    (authorize,) = await sandbox.authorize_calls()
    first = await quick.get(f"/v1/links/{linked.link_id}/accounts")
    assert first.status_code == 202
    body = await accounts_when_ready(quick, linked.link_id)

    # One GetAccountsDetail with the connecting RequestId, then one poll of its Async GET.
    assert await _data_calls(sandbox) == [
        ("GetAccountsDetail", 202),
        ("GetAccountsDetailAsync", 200),
    ]
    for call in await sandbox.calls("GetAccountsDetail") + await sandbox.calls(
        "GetAccountsDetailAsync"
    ):
        assert call["request_id"] == authorize["response_request_id"]
        assert call["api_key"] == sandbox.handle.settings.api_key

    assert set(body) == {"accounts", "refreshed_at"}
    accounts = body["accounts"]
    assert len(accounts) == len(sandbox_data.ACCOUNTS) >= 3
    expected_ids = {sandbox_data.account_id(linked.login_id, t) for t in sandbox_data.ACCOUNTS}
    assert {a["account_id"] for a in accounts} == expected_ids
    for account, template in zip(
        sorted(accounts, key=lambda a: a["account_id"]),
        sorted(sandbox_data.ACCOUNTS, key=lambda t: sandbox_data.account_id(linked.login_id, t)),
        strict=True,
    ):
        assert set(account) == ACCOUNT_FIELDS
        assert re.fullmatch(r"\d{1,4}", account["mask"]), account["mask"]
        assert template.account_number.endswith(account["mask"])
        assert account["name"] == template.title
        assert (account["type"], account["category"], account["currency"]) == (
            template.type,
            template.category,
            template.currency,
        )
        balance = account["balance"]
        assert set(balance) == {"current", "available"}
        assert all(isinstance(v, int | float) for v in balance.values()), balance
        assert balance["current"] == template.current

    # Cached now: read again, no new call; the link says when it was refreshed.
    again = await quick.get(f"/v1/links/{linked.link_id}/accounts")
    assert again.status_code == 200
    assert again.json() == body
    _assert_browser_safe(again, linked.login_id)
    assert len(await _data_calls(sandbox)) == 2
    link = (await quick.get(f"/v1/links/{linked.link_id}")).json()
    assert link["refreshed_at"] == body["refreshed_at"]


async def test_data_is_cached_sealed_in_redis(
    quick: httpx.AsyncClient, sandbox: Sandbox, redis: Redis
) -> None:
    linked = await connect(quick, sandbox)
    await accounts_when_ready(quick, linked.link_id)
    transactions, _ = await all_transactions(quick, linked.link_id, limit=200)
    description = transactions[0]["description"]
    keys = [key async for key in redis.scan_iter("*")]
    assert any(":data:" in key for key in keys)
    for key in keys:
        assert linked.login_id not in key
        assert await redis.pttl(key) != -1, f"{key} never expires"
        if await redis.type(key) == "string":  # (the poll gap's may have expired meanwhile)
            value = str(await redis.get(key))
            for secret in (linked.login_id, description, sandbox_data.HOLDER["Name"]):
                assert secret not in value, key


@pytest.mark.parametrize("username", CONNECTING_USERS)
async def test_each_connecting_test_user_gets_accounts_and_transactions(
    quick: httpx.AsyncClient, sandbox: Sandbox, username: str
) -> None:
    linked = await connect(quick, sandbox, username)
    accounts = (await accounts_when_ready(quick, linked.link_id))["accounts"]
    assert len(accounts) >= 3
    transactions, _ = await all_transactions(quick, linked.link_id, limit=200)
    assert len(transactions) >= 100
    assert {t["account_id"] for t in transactions} <= {a["account_id"] for a in accounts}


async def test_a_user_who_answers_the_banks_question_gets_data(
    redis_url: str, redis: Redis, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Connect signing in live: Greatday's question is answered through the BFF."""
    short_poll_gap(monkeypatch)
    settings = bff_settings(redis_url, sandbox, FLINKS_CONNECT_AUTHORIZE="live")
    async with serve_in_process(create_app(settings)) as client:
        started = await start(client)
        login_id = await sandbox.issue_login("Greatday")
        flow = (await complete(client, started["flow_id"], login_id)).json()
        assert flow["status"] == "mfa_required"
        done = await answer_until_connected(client, started["flow_id"], flow)
        assert done["status"] == "connected"
        link_id = done["link_id"]
        assert [link["link_id"] for link in (await client.get("/v1/links")).json()["links"]] == [
            link_id
        ]
        accounts = (await accounts_when_ready(client, link_id))["accounts"]
    assert len(accounts) == len(sandbox_data.ACCOUNTS)
    *_, answered = await sandbox.authorize_calls()
    (detail,) = await sandbox.calls("GetAccountsDetail")
    assert detail["request_id"] == answered["response_request_id"]


# -- transactions ------------------------------------------------------------------------------


async def test_transactions_page_newest_first_without_duplicates(
    quick: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    linked = await connect(quick, sandbox)
    ready = await accounts_when_ready(quick, linked.link_id)
    accounts = ready["accounts"]
    today = _iso(ready["refreshed_at"]).date()  # the windows count back from the refresh
    calls = len(await _data_calls(sandbox))

    everything, one_page = await all_transactions(quick, linked.link_id, limit=200)
    paged, pages = await all_transactions(quick, linked.link_id, limit=37)
    assert one_page == -(-len(everything) // 200)
    assert paged == everything
    assert pages == -(-len(everything) // 37) >= 3
    default_page = await quick.get(f"/v1/links/{linked.link_id}/transactions")
    assert len(default_page.json()["transactions"]) == 50
    assert default_page.json()["transactions"] == everything[:50]

    assert 150 <= len(everything) <= 400  # about 250 in 90 days (app/sandbox/README.md)
    for transaction in everything:
        assert set(transaction) == TRANSACTION_FIELDS
        assert isinstance(transaction["amount"], int | float)
    dates = [date.fromisoformat(t["date"]) for t in everything]
    assert dates == sorted(dates, reverse=True)
    assert today >= dates[0] > dates[-1] > today - timedelta(days=90)
    identities = [
        (t["account_id"], t["date"], t["description"], t["amount"], t["balance"])
        for t in everything
    ]
    assert len(set(identities)) == len(identities)

    # One account only, and a shorter window.
    chequing = next(a for a in accounts if a["name"] == "Chequing CAD")
    own, _ = await all_transactions(
        quick, linked.link_id, account_id=chequing["account_id"], limit=200
    )
    assert own
    assert own == [t for t in everything if t["account_id"] == chequing["account_id"]]
    recent, _ = await all_transactions(quick, linked.link_id, days=7, limit=200)
    assert recent
    assert recent == [
        t for t in everything if date.fromisoformat(t["date"]) > today - timedelta(days=7)
    ]
    assert len(recent) < len(everything)
    # Paging read the cache: Flinks was not asked again.
    assert len(await _data_calls(sandbox)) == calls


async def test_transaction_queries_out_of_bounds_are_refused(
    quick: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    linked = await connect(quick, sandbox)
    await accounts_when_ready(quick, linked.link_id)
    path = f"/v1/links/{linked.link_id}/transactions"
    first = (await quick.get(path, params={"limit": 10})).json()
    cursor = first["next_cursor"]
    assert cursor

    refusals: list[dict[str, Any]] = [
        {"days": 91},
        {"days": 0},
        {"limit": 0},
        {"limit": 201},
        {"account_id": "not-one-of-these"},
        # A cursor of another query: another window, another account, or none of ours.
        {"cursor": cursor, "days": 30, "limit": 10},
        {
            "cursor": cursor,
            "account_id": sandbox_data.account_id(linked.login_id, sandbox_data.ACCOUNTS[0]),
        },
        {"cursor": "garbage!!"},
        {"cursor": "MTAuYWJj"},  # "10.abc": well formed, not a mark we gave
        {"cursor": "x" * 201},
    ]
    for params in refusals:
        response = await quick.get(path, params=params)
        assert response.status_code == 422, (params, response.text)
        assert response.json()["code"] == "validation_error", params
    # The cursor still works for its own query.
    second = await quick.get(path, params={"cursor": cursor, "limit": 10})
    assert second.status_code == 200
    assert second.json()["transactions"][0] != first["transactions"][0]


# -- delete ------------------------------------------------------------------------------------


async def test_delete_calls_delete_card_once_and_the_link_is_gone(
    quick: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    linked = await connect(quick, sandbox)
    await accounts_when_ready(quick, linked.link_id)
    path = f"/v1/links/{linked.link_id}"
    assert linked.login_id in str((await sandbox.http.get("/__sandbox/logins")).json())

    deleted = await quick.delete(path)
    assert deleted.status_code == 204, deleted.text
    assert deleted.content == b""
    (call,) = await sandbox.calls("DeleteCard")
    assert (call["status"], call["login_id"]) == (200, linked.login_id)
    assert call["api_key"] == sandbox.handle.settings.api_key
    assert call["method"] == "DELETE"

    again = await quick.delete(path)
    assert again.status_code == 204
    assert len(await sandbox.calls("DeleteCard")) == 1

    for response in (
        await quick.get(path),
        await quick.get(f"{path}/accounts"),
        await quick.get(f"{path}/transactions"),
    ):
        assert response.status_code == 404, response.text
        assert response.json()["code"] == "link_not_found"
    assert (await quick.get("/v1/links")).json() == {"links": []}
    # Flinks forgot the login: its loginId no longer authorizes.
    logins = (await sandbox.http.get("/__sandbox/logins")).json()
    assert linked.login_id not in str(logins)


async def test_two_concurrent_deletes_call_delete_card_once(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    linked = await connect(client, sandbox)
    path = f"/v1/links/{linked.link_id}"
    first, second = await asyncio.gather(client.delete(path), client.delete(path))
    codes = sorted([first.status_code, second.status_code])
    # The loser sees the delete under way (409, try again) or already done (204).
    assert codes in ([204, 204], [204, 409]), (first.text, second.text)
    assert len(await sandbox.calls("DeleteCard")) == 1
    assert (await client.delete(path)).status_code == 204
    assert len(await sandbox.calls("DeleteCard")) == 1
    assert (await client.get(path)).status_code == 404


async def test_delete_while_flinks_prepares_the_data_is_a_conflict_and_keeps_the_link(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    linked = await connect(client, sandbox)
    assert (await client.get(f"/v1/links/{linked.link_id}/accounts")).status_code == 202
    refused = await client.delete(f"/v1/links/{linked.link_id}")
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "conflict"
    assert refused.headers["retry-after"]
    (call,) = await sandbox.calls("DeleteCard")
    assert (call["status"], call["flinks_code"]) == (400, "CARD_IN_USE")
    link = await client.get(f"/v1/links/{linked.link_id}")
    assert link.status_code == 200
    assert link.json()["status"] == "active"
    assert [lk["link_id"] for lk in (await client.get("/v1/links")).json()["links"]] == [
        linked.link_id
    ]


# -- another owner -----------------------------------------------------------------------------


async def test_another_session_cannot_read_delete_or_see_the_data_of_a_link(
    quick: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    linked = await connect(quick, sandbox)
    await accounts_when_ready(quick, linked.link_id)
    path = f"/v1/links/{linked.link_id}"
    async with httpx.AsyncClient(transport=quick._transport, base_url=str(quick.base_url)) as other:
        await connect(other, sandbox, "Greatday")  # a session, and a link, of its own
        anonymous = httpx.AsyncClient(transport=quick._transport, base_url=str(quick.base_url))
        async with anonymous:
            for browser in (other, anonymous):
                for response in (
                    await browser.get(path),
                    await browser.get(f"{path}/accounts"),
                    await browser.get(f"{path}/transactions"),
                    await browser.delete(path),
                ):
                    assert response.status_code == 404, response.text
                    assert response.json()["code"] == "link_not_found"
                listed = [lk["link_id"] for lk in (await browser.get("/v1/links")).json()["links"]]
                assert linked.link_id not in listed
    assert await sandbox.calls("DeleteCard") == []
    assert (await quick.get(path)).status_code == 200
