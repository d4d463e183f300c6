"""The data endpoints and DeleteCard of `FlinksClient`, against the sandbox over real HTTP.

A connected login (the sandbox's control API issues its LoginId; a cached /Authorize opens the
session) is read with GetAccountsDetail (202, then its Async endpoint), GetAccountsSummary and
its Async endpoint, and deleted with DeleteCard. What the sandbox cannot be made to send
(numbers with more digits than a float keeps, nulls, other date formats, canary values) comes
from `Crafted`, a small server on a real socket too.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.flinks import (
    AccountsOutcome,
    AccountsPending,
    AccountsReady,
    Connected,
    Failed,
    FlinksBadResponse,
    FlinksClient,
    FlinksRejected,
    FlinksTimeout,
    FlinksTimeouts,
    FlinksUnavailable,
    MfaRequired,
    Pending,
    RetryPolicy,
)
from app.sandbox.data import HOLDER
from tests.flinks.fakes import RecordedSleeps
from tests.ports import reserve_port
from tests.sandbox.conftest import clean_settings
from tests.sandbox.server import SandboxHandle, running_sandbox, serve_quietly
from tests.waiting import wait_until_async

SECRET = "data-secret-canary-0b5e"
API_KEY = "data-apikey-canary-61d9"
DATA_ENDPOINTS = {
    "GetAccountsDetail",
    "GetAccountsDetailAsync",
    "GetAccountsSummary",
    "GetAccountsSummaryAsync",
}
UNKNOWN_REQUEST_ID = "9022abc2-8a2e-4b06-a06e-c3e5449c4d10"

Read = Callable[[FlinksClient, str], Awaitable[AccountsOutcome]]
READS: dict[str, Read] = {
    "detail": lambda c, r: c.accounts_detail(request_id=r),
    "detail_async": lambda c, r: c.accounts_detail_async(request_id=r),
    "summary": lambda c, r: c.accounts_summary(request_id=r),
    "summary_async": lambda c, r: c.accounts_summary_async(request_id=r),
}


# -- the sandbox --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def _sandbox() -> Iterator[SandboxHandle]:
    with running_sandbox(clean_settings(secret_key=SECRET, api_key=API_KEY)) as sandbox:
        yield sandbox


@pytest.fixture
async def control(_sandbox: SandboxHandle) -> AsyncIterator[httpx.AsyncClient]:
    """The sandbox's control API (and its raw Flinks API), reset to a fresh state."""
    async with httpx.AsyncClient(base_url=_sandbox.base_url, timeout=10) as client:
        assert (await client.post("/__sandbox/reset")).status_code == 204
        yield client


@pytest.fixture
def sandbox(_sandbox: SandboxHandle, control: httpx.AsyncClient) -> SandboxHandle:
    return _sandbox


@pytest.fixture
def sleeps() -> RecordedSleeps:
    return RecordedSleeps()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def make_client(
    http: httpx.AsyncClient,
    api_url: str,
    customer_id: str,
    sleeps: RecordedSleeps,
    *,
    api_key: str | None = API_KEY,
    timeouts: FlinksTimeouts | None = None,
) -> FlinksClient:
    retry = RetryPolicy(sleep=sleeps, random=lambda: 0.5)
    return FlinksClient(
        http,
        api_url=api_url,
        customer_id=customer_id,
        secret_key=SecretStr(SECRET),
        api_key=SecretStr(api_key) if api_key is not None else None,
        timeouts=timeouts or FlinksTimeouts(),
        mint_retry=retry,
        send_retry=retry,
    )


@pytest.fixture
def client(sandbox: SandboxHandle, http: httpx.AsyncClient, sleeps: RecordedSleeps) -> FlinksClient:
    return make_client(http, sandbox.base_url, sandbox.customer_id, sleeps)


async def issue_login(control: httpx.AsyncClient, username: str = "greatday_nomfa") -> str:
    response = await control.post("/__sandbox/logins", json={"username": username})
    assert response.status_code == 201, response.text
    login_id: str = response.json()["login_id"]
    return login_id


async def connect(
    client: FlinksClient, control: httpx.AsyncClient, username: str = "greatday_nomfa"
) -> Connected:
    """What the BFF does once a flow has connected: a cached /Authorize of the loginId."""
    connected = await client.authorize_cached(login_id=await issue_login(control, username))
    assert isinstance(connected, Connected)
    return connected


async def ready_detail(client: FlinksClient, request_id: str, **options: Any) -> AccountsReady:
    pending = await client.accounts_detail(request_id=request_id, **options)
    assert pending == AccountsPending(request_id=request_id)
    ready = await client.accounts_detail_async(request_id=request_id)
    assert isinstance(ready, AccountsReady)
    return ready


async def calls(control: httpx.AsyncClient, endpoint: str, count: int = 1) -> list[dict[str, Any]]:
    """The sandbox's records of `endpoint` once there are `count` (a record is written as its
    response ends, so it may trail the answer by a moment)."""

    async def recorded() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = (
            await control.get("/__sandbox/calls", params={"endpoint": endpoint})
        ).json()
        return found if len(found) >= count else []

    return await wait_until_async(recorded, what=f"{count} recorded {endpoint} call(s)")


async def raw_detail(control: httpx.AsyncClient, sandbox: SandboxHandle, request_id: str) -> str:
    """GetAccountsDetail's body as the sandbox sends it (delivered data answers at once)."""
    response = await control.post(
        f"{sandbox.api_url}/GetAccountsDetail",
        json={"RequestId": request_id},
        headers={"x-api-key": API_KEY},
    )
    assert response.status_code == 200, response.text
    return response.text


# -- the documented path ------------------------------------------------------------------------


async def test_detail_is_pending_then_ready_with_several_accounts_and_transactions(
    client: FlinksClient, control: httpx.AsyncClient
) -> None:
    connected = await connect(client, control)

    ready = await ready_detail(client, connected.request_id)

    assert ready.request_id == connected.request_id
    accounts = ready.accounts
    assert [a.type for a in accounts] == ["Chequing", "Savings", "Chequing", "CreditCard", "TFSA"]
    assert len({a.account_id for a in accounts}) == 5
    assert [a.currency for a in accounts] == ["CAD", "CAD", "USD", "CAD", "CAD"]
    chequing, visa = accounts[0], accounts[3]
    assert chequing.title == "Chequing CAD"
    assert chequing.category == "Operations"
    assert chequing.account_number == "1002347"
    assert chequing.last_four is None
    assert visa.last_four == "4242"
    assert chequing.balance.current == Decimal("5105.52")
    assert chequing.balance.available == Decimal("5605.52")
    assert visa.balance.limit == Decimal("10000.0")
    transactions = [t for a in accounts for t in a.transactions]
    assert len(transactions) >= 200
    assert all(a.transactions for a in accounts)
    oldest = date.today() - timedelta(days=91)  # the sandbox dates in UTC
    assert all(t.date > oldest for t in transactions)
    for account in accounts:
        dates = [t.date for t in account.transactions]
        assert dates == sorted(dates, reverse=True)
        assert account.transactions[0].balance == account.balance.current
    for txn in transactions:
        assert txn.description
        assert (txn.debit is None) != (txn.credit is None)
        amounts = (txn.debit, txn.credit, txn.balance)
        assert all(isinstance(a, Decimal) for a in amounts if a is not None)


async def test_amounts_are_exactly_the_numbers_flinks_sent(
    client: FlinksClient, control: httpx.AsyncClient, sandbox: SandboxHandle
) -> None:
    connected = await connect(client, control)
    ready = await ready_detail(client, connected.request_id)
    raw = json.loads(await raw_detail(control, sandbox, connected.request_id), parse_float=str)

    def text(amount: Decimal | None) -> str | None:
        return None if amount is None else str(amount)

    for account, sent in zip(ready.accounts, raw["Accounts"], strict=True):
        assert account.account_id == sent["Id"]
        balance = account.balance
        assert [text(balance.available), text(balance.current), text(balance.limit)] == [
            sent["Balance"]["Available"],
            sent["Balance"]["Current"],
            sent["Balance"]["Limit"],
        ]
        assert len(account.transactions) == len(sent["Transactions"])
        for txn, sent_txn in zip(account.transactions, sent["Transactions"], strict=True):
            assert txn.transaction_id == sent_txn["Id"]
            assert txn.date.isoformat() == sent_txn["Date"]
            assert txn.description == sent_txn["Description"]
            assert [text(txn.debit), text(txn.credit), text(txn.balance)] == [
                sent_txn["Debit"],
                sent_txn["Credit"],
                sent_txn["Balance"],
            ]


async def test_no_holder_detail_reaches_the_outcome(
    client: FlinksClient, control: httpx.AsyncClient, sandbox: SandboxHandle
) -> None:
    connected = await connect(client, control)
    ready = await ready_detail(client, connected.request_id)
    summary = await client.accounts_summary(request_id=connected.request_id)
    address = HOLDER["Address"]
    holder = [HOLDER["Name"], HOLDER["Email"], HOLDER["PhoneNumber"]]
    holder += [address["CivicAddress"], address["PostalCode"]]

    raw = await raw_detail(control, sandbox, connected.request_id)
    everything = str(dataclasses.asdict(ready)) + str(summary) + repr(ready)

    assert all(value in raw for value in holder)  # the sandbox does send them
    for value in holder:
        assert value not in everything
    assert all(not hasattr(a, "holder") for a in ready.accounts)


async def test_a_year_of_transactions_or_none(
    client: FlinksClient, control: httpx.AsyncClient
) -> None:
    connected = await connect(client, control)
    quarter = await ready_detail(client, connected.request_id)

    # Once delivered, the same RequestId serves other options at once.
    year = await client.accounts_detail(request_id=connected.request_id, days=365)
    bare = await client.accounts_detail(request_id=connected.request_id, with_transactions=False)

    assert isinstance(year, AccountsReady)
    assert isinstance(bare, AccountsReady)
    year_count = sum(len(a.transactions) for a in year.accounts)
    quarter_count = sum(len(a.transactions) for a in quarter.accounts)
    assert year_count > 3 * quarter_count
    assert min(t.date for a in year.accounts for t in a.transactions) > date.today() - timedelta(
        days=366
    )
    assert [a.account_id for a in bare.accounts] == [a.account_id for a in quarter.accounts]
    assert all(a.transactions == () for a in bare.accounts)
    assert all(a.balance.current is not None for a in bare.accounts)
    posts = await calls(control, "GetAccountsDetail", 3)
    assert [c["fields"] for c in posts] == [
        [
            "RequestId",
            "WithAccountIdentity",
            "WithBalance",
            "WithTransactions",
            "DaysOfTransactions",
        ]
    ] * 3


async def test_summary_lists_the_accounts_without_transactions(
    client: FlinksClient, control: httpx.AsyncClient
) -> None:
    connected = await connect(client, control)

    summary = await client.accounts_summary(request_id=connected.request_id)
    again = await client.accounts_summary_async(request_id=connected.request_id)

    assert isinstance(summary, AccountsReady)
    assert summary == again
    assert summary.request_id == connected.request_id
    assert len(summary.accounts) == 5
    assert all(a.transactions == () for a in summary.accounts)
    assert summary.accounts[1].balance.current == Decimal("12480.37")
    posts = await calls(control, "GetAccountsSummary")
    assert posts[0]["fields"] == ["RequestId"]


async def test_reads_are_pending_while_the_login_is_still_processing(
    client: FlinksClient, control: httpx.AsyncClient
) -> None:
    login_id = await issue_login(control, "test_dispatched")
    dispatched = await client.authorize_live(login_id=login_id)
    assert isinstance(dispatched, Pending)
    assert dispatched.request_id is not None
    request_id = dispatched.request_id

    summary = await client.accounts_summary(request_id=request_id)
    detail = await client.accounts_detail(request_id=request_id)
    finished = await control.post(f"/__sandbox/dispatched/{request_id}/finish")
    assert finished.status_code == 200, finished.text
    ready = await client.accounts_summary_async(request_id=request_id)

    assert summary == AccountsPending(request_id=request_id)
    assert detail == AccountsPending(request_id=request_id)
    assert isinstance(ready, AccountsReady)
    assert len(ready.accounts) == 5


# -- x-api-key ----------------------------------------------------------------------------------


async def test_the_api_key_goes_to_every_data_call_and_delete_card(
    client: FlinksClient, control: httpx.AsyncClient
) -> None:
    connected = await connect(client, control)
    await ready_detail(client, connected.request_id)
    await client.accounts_summary(request_id=connected.request_id)
    await client.accounts_summary_async(request_id=connected.request_id)
    await client.delete_card(login_id=connected.login_id)

    for endpoint in (*DATA_ENDPOINTS, "DeleteCard"):
        (record,) = await calls(control, endpoint)
        assert record["api_key"] == API_KEY
        assert record["status"] == (202 if endpoint == "GetAccountsDetail" else 200)


@pytest.mark.parametrize("name", ["detail", "summary_async"])
async def test_a_refused_api_key_is_access_denied(
    control: httpx.AsyncClient,
    sandbox: SandboxHandle,
    http: httpx.AsyncClient,
    sleeps: RecordedSleeps,
    name: str,
) -> None:
    good = make_client(http, sandbox.base_url, sandbox.customer_id, sleeps)
    wrong = make_client(http, sandbox.base_url, sandbox.customer_id, sleeps, api_key="nope")
    connected = await connect(good, control)

    with pytest.raises(FlinksRejected) as read:
        await READS[name](wrong, connected.request_id)
    with pytest.raises(FlinksRejected) as delete:
        await wrong.delete_card(login_id=connected.login_id)

    for refused in (read.value, delete.value):
        assert (refused.status, refused.flinks_code) == (401, "ACCESS_DENIED")
    assert sleeps.delays == []  # a refusal is not retried


@pytest.mark.parametrize("api_key", [None, ""])
async def test_without_an_api_key_none_is_sent(
    control: httpx.AsyncClient,
    sandbox: SandboxHandle,
    http: httpx.AsyncClient,
    sleeps: RecordedSleeps,
    api_key: str | None,
) -> None:
    keyless = make_client(http, sandbox.base_url, sandbox.customer_id, sleeps, api_key=api_key)
    connected = await connect(keyless, control)

    with pytest.raises(FlinksRejected) as refused:
        await keyless.accounts_summary(request_id=connected.request_id)
    # An instance where Flinks has not enabled the key lets a missing one through.
    await control.patch("/__sandbox/switches", json={"api_key_check": "optional"})
    summary = await keyless.accounts_summary(request_id=connected.request_id)

    assert (refused.value.status, refused.value.flinks_code) == (401, "ACCESS_DENIED")
    assert isinstance(summary, AccountsReady)
    records = await calls(control, "GetAccountsSummary", 2)
    assert [r["api_key"] for r in records] == [None, None]


# -- what the caller must tell apart ------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(READS))
async def test_an_unknown_request_id_is_session_nonexistent(
    client: FlinksClient, control: httpx.AsyncClient, sleeps: RecordedSleeps, name: str
) -> None:
    with pytest.raises(FlinksRejected) as rejected:
        await READS[name](client, UNKNOWN_REQUEST_ID)

    assert (rejected.value.status, rejected.value.flinks_code) == (400, "SESSION_NONEXISTENT")
    assert sleeps.delays == []


async def test_a_session_whose_mfa_is_unanswered_is_unauthorized(
    client: FlinksClient, control: httpx.AsyncClient
) -> None:
    mfa = await client.authorize_live(login_id=await issue_login(control, "Greatday"))
    assert isinstance(mfa, MfaRequired)

    with pytest.raises(FlinksRejected) as rejected:
        await client.accounts_detail(request_id=mfa.request_id)

    assert (rejected.value.status, rejected.value.flinks_code) == (401, "UNAUTHORIZED")


@pytest.mark.parametrize("status", [401, 400])
async def test_delete_card_once_then_the_login_is_invalid(
    client: FlinksClient, control: httpx.AsyncClient, status: int
) -> None:
    # INVALID_LOGIN is a 401 in Flinks' error table and a 400 in its help centre.
    await control.patch("/__sandbox/switches", json={"invalid_login_status": status})
    connected = await connect(client, control)

    await client.delete_card(login_id=connected.login_id)  # 200: returns
    with pytest.raises(FlinksRejected) as again:
        await client.delete_card(login_id=connected.login_id)
    with pytest.raises(FlinksRejected) as read:
        await client.accounts_summary(request_id=connected.request_id)
    cached = await client.authorize_cached(login_id=connected.login_id)

    assert (again.value.status, again.value.flinks_code) == (status, "INVALID_LOGIN")
    assert read.value.flinks_code == "SESSION_NONEXISTENT"
    assert isinstance(cached, Failed)
    assert cached.flinks_code == "INVALID_LOGIN"


async def test_delete_card_is_card_in_use_while_a_detail_is_pending(
    client: FlinksClient, control: httpx.AsyncClient
) -> None:
    connected = await connect(client, control)
    pending = await client.accounts_detail(request_id=connected.request_id)
    assert isinstance(pending, AccountsPending)

    with pytest.raises(FlinksRejected) as in_use:
        await client.delete_card(login_id=connected.login_id)
    ready = await client.accounts_detail_async(request_id=connected.request_id)
    await client.delete_card(login_id=connected.login_id)  # 200: returns

    assert (in_use.value.status, in_use.value.flinks_code) == (400, "CARD_IN_USE")
    assert isinstance(ready, AccountsReady)


# -- retries ------------------------------------------------------------------------------------


async def inject(control: httpx.AsyncClient, endpoint: str, **fault: object) -> None:
    """One fault on `endpoint`'s next call."""
    body = {"endpoints": [endpoint], "remaining": 1, **fault}
    response = await control.put("/__sandbox/faults", json=body)
    assert response.status_code == 200, response.text


FAULTS = [("error", {"error_rate": 1, "error_status": 503}), ("drop", {"drop_rate": 1})]


@pytest.mark.parametrize(("kind", "fault"), FAULTS, ids=["503", "dropped"])
async def test_a_read_is_repeated_after_a_transient_failure(
    client: FlinksClient,
    control: httpx.AsyncClient,
    sleeps: RecordedSleeps,
    kind: str,
    fault: dict[str, object],
) -> None:
    connected = await connect(client, control)
    assert isinstance(
        await client.accounts_detail(request_id=connected.request_id), AccountsPending
    )
    await inject(control, "GetAccountsDetailAsync", **fault)

    ready = await client.accounts_detail_async(request_id=connected.request_id)

    assert isinstance(ready, AccountsReady)
    assert len(sleeps.delays) == 1
    records = await calls(control, "GetAccountsDetailAsync", 2)
    assert [r["fault"] for r in records] == [kind, None]


@pytest.mark.parametrize(("kind", "fault"), FAULTS, ids=["503", "dropped"])
async def test_delete_card_is_not_repeated_once_it_may_have_been_sent(
    client: FlinksClient,
    control: httpx.AsyncClient,
    sleeps: RecordedSleeps,
    kind: str,
    fault: dict[str, object],
) -> None:
    connected = await connect(client, control)
    await inject(control, "DeleteCard", **fault)

    with pytest.raises(FlinksUnavailable) as failed:
        await client.delete_card(login_id=connected.login_id)
    # The fault did no work: the card is still there, and a later DeleteCard removes it.
    await client.delete_card(login_id=connected.login_id)

    assert failed.value.may_have_been_sent
    assert sleeps.delays == []
    records = await calls(control, "DeleteCard", 2)
    assert [r["fault"] for r in records] == [kind, None]


async def test_calls_that_were_never_sent_are_repeated(
    http: httpx.AsyncClient, sleeps: RecordedSleeps
) -> None:
    with reserve_port() as nobody:  # bound, not listening: connections are refused
        client = make_client(http, nobody.url, "43387ca6-0391-4c82-857d-70d95f087ecb", sleeps)
        with pytest.raises(FlinksUnavailable) as delete:
            await client.delete_card(login_id=UNKNOWN_REQUEST_ID)
        delete_retries = len(sleeps.delays)
        with pytest.raises(FlinksUnavailable) as read:
            await client.accounts_detail_async(request_id=UNKNOWN_REQUEST_ID)

    assert not delete.value.may_have_been_sent
    assert not read.value.may_have_been_sent
    assert delete_retries == 2
    assert len(sleeps.delays) == 4


async def test_a_held_read_ends_at_the_short_deadline(
    client: FlinksClient,
    control: httpx.AsyncClient,
    sandbox: SandboxHandle,
    http: httpx.AsyncClient,
    sleeps: RecordedSleeps,
) -> None:
    # Not /Authorize's minutes: a request of the BFF may be waiting on this call.
    connected = await connect(client, control)
    short = FlinksTimeouts(deadline=0.5, min_attempt=0.1)
    hasty = make_client(http, sandbox.base_url, sandbox.customer_id, sleeps, timeouts=short)
    await inject(control, "GetAccountsDetail", timeout_rate=1, timeout_seconds=2)

    with pytest.raises(FlinksTimeout) as held:
        await hasty.accounts_detail(request_id=connected.request_id)

    assert held.value.may_have_been_sent
    # The sandbox records the call once it has held it: wait, so no later test sees it.
    (record,) = await calls(control, "GetAccountsDetail")
    assert record["fault"] == "timeout"


@pytest.mark.parametrize("bad", ["", "../GenerateAuthorizeToken", "a b", "x" * 65])
async def test_an_id_that_is_not_an_id_is_refused_before_any_call(
    client: FlinksClient, control: httpx.AsyncClient, bad: str
) -> None:
    for read in READS.values():
        with pytest.raises(ValueError, match="request_id"):
            await read(client, bad)
    with pytest.raises(ValueError, match="login_id"):
        await client.delete_card(login_id=bad)

    assert (await control.get("/__sandbox/calls")).json() == []


async def test_days_other_than_90_or_365_are_refused(client: FlinksClient) -> None:
    with pytest.raises(ValueError, match="days"):
        await client.accounts_detail(request_id=UNKNOWN_REQUEST_ID, days=30)  # type: ignore[arg-type]


# -- leaks --------------------------------------------------------------------------------------


async def test_outcomes_and_logs_show_no_identifier_or_key(
    client: FlinksClient, control: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    for name in (None, "httpx", "httpcore", "app.flinks"):
        caplog.set_level(logging.DEBUG, logger=name)
    connected = await connect(client, control)
    pending = await client.accounts_detail(request_id=connected.request_id)
    ready = await client.accounts_detail_async(request_id=connected.request_id)
    summary = await client.accounts_summary(request_id=connected.request_id)
    await client.delete_card(login_id=connected.login_id)
    with pytest.raises(FlinksRejected) as gone:
        await client.delete_card(login_id=connected.login_id)
    assert isinstance(ready, AccountsReady)

    shown = repr(pending) + repr(ready) + repr(summary) + str(gone.value) + repr(gone.value)
    shown += "".join(repr(a) + repr(a.balance) for a in ready.accounts)
    shown += "".join(repr(t) for a in ready.accounts for t in a.transactions)
    for canary in (connected.request_id, connected.login_id, API_KEY, SECRET):
        assert canary not in shown
    logged = "".join(r.getMessage() + repr(vars(r)) for r in caplog.records)
    assert API_KEY not in logged
    assert SECRET not in logged
    # httpx's own INFO line carries the URL (AuthorizeAsync/{requestId}, DeleteCard/{loginId});
    # the app keeps that logger at WARNING. Every other line is clean.
    ours = "".join(r.getMessage() + repr(vars(r)) for r in caplog.records if r.name != "httpx")
    assert connected.request_id not in ours
    assert connected.login_id not in ours
    flinks_calls = [r for r in caplog.records if r.getMessage() == "flinks.call"]
    endpoints = [getattr(r, "endpoint", None) for r in flinks_calls]
    assert endpoints[-5:] == [
        "GetAccountsDetail",
        "GetAccountsDetailAsync",
        "GetAccountsSummary",
        "DeleteCard",
        "DeleteCard",
    ]


# -- bodies the sandbox does not send: a crafted Flinks on a real socket -------------------------

CRAFTED_CUSTOMER = "43387ca6-0391-4c82-857d-70d95f087ecb"
ACCOUNT_NUMBER = "acctnum-canary-44c1"
LAST_FOUR = "last4-canary-9e"
DESCRIPTION = "description-canary-b7a2"
HOLDER_NAME = "holder-canary-1f0d"


class Crafted:
    """Answers each BankingServices endpoint with the raw bytes set for it; mints tokens."""

    def __init__(self) -> None:
        self.bodies: dict[str, tuple[int, bytes]] = {}
        self.requests: list[tuple[str, httpx.Headers]] = []
        self.app = Starlette(
            routes=[Route("/{path:path}", self.handle, methods=["GET", "POST", "DELETE"])]
        )

    async def handle(self, request: Request) -> Response:
        endpoint = request.url.path.split("/")[4]
        self.requests.append((endpoint, httpx.Headers(request.headers.raw)))
        if endpoint == "GenerateAuthorizeToken":
            return Response(b'{"HttpStatusCode": 200, "Token": "t"}', 200)
        status, body = self.bodies[endpoint]
        return Response(body, status, media_type="application/json")

    def answer(self, endpoint: str, body: str, status: int = 200) -> None:
        self.bodies[endpoint] = (status, body.encode())


@pytest.fixture(scope="module")
def _crafted() -> Iterator[tuple[Crafted, str]]:
    crafted = Crafted()
    with serve_quietly(crafted.app) as served:
        yield crafted, served.url


@pytest.fixture
def crafted(_crafted: tuple[Crafted, str]) -> Crafted:
    crafted, _ = _crafted
    crafted.bodies.clear()
    crafted.requests.clear()
    return crafted


@pytest.fixture
def crafted_client(
    _crafted: tuple[Crafted, str], http: httpx.AsyncClient, sleeps: RecordedSleeps
) -> FlinksClient:
    return make_client(http, _crafted[1], CRAFTED_CUSTOMER, sleeps)


def accounts_body(*accounts: str) -> str:
    """A 200 written by hand, so that numbers keep the exact text given."""
    return (
        '{"HttpStatusCode": 200, "RequestId": "other-request-id", "Unexpected": {"x": [1]},'
        f' "Accounts": [{", ".join(accounts)}]}}'
    )


async def test_numbers_keep_digits_a_float_would_lose(
    crafted: Crafted, crafted_client: FlinksClient
) -> None:
    crafted.answer(
        "GetAccountsSummary",
        accounts_body(
            '{"Id": "a1", "Balance": {"Current": 12345678901234567.891, "Available": 0.1,'
            ' "Limit": 1e2}, "AccountNumber": 100200300, "Transactions": ['
            '{"Id": "t1", "Date": "2025-01-31", "Debit": 1000.40, "Credit": null,'
            ' "Balance": -0.005}]}'
        ),
    )

    ready = await crafted_client.accounts_summary(request_id=UNKNOWN_REQUEST_ID)

    assert isinstance(ready, AccountsReady)
    assert ready.request_id == UNKNOWN_REQUEST_ID  # the one sent, not the body's
    (account,) = ready.accounts
    assert str(account.balance.current) == "12345678901234567.891"
    assert account.balance.available == Decimal("0.1")
    assert account.balance.limit == 100
    assert account.account_number == "100200300"  # a number where text was expected
    (txn,) = account.transactions
    assert str(txn.debit) == "1000.40"
    assert txn.credit is None
    assert txn.balance == Decimal("-0.005")


async def test_nulls_and_missing_fields_are_tolerated(
    crafted: Crafted, crafted_client: FlinksClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="app.flinks")
    crafted.answer(
        "GetAccountsDetailAsync",
        accounts_body(
            '{"Id": "a1", "Title": null, "Category": null, "Type": null, "Currency": null,'
            ' "AccountNumber": null, "LastFourDigits": null, "Balance": null,'
            ' "Transactions": null, "Holder": null}',
            '{"Id": "a2", "Balance": {"Current": null}, "Transactions": ['
            '{"Id": "t1", "Date": "2025/01/31", "Description": null},'
            '{"Id": "t2", "Date": "2025-01-30T17:40:54.569261"},'
            '{"Id": null, "Date": "2025-01-29", "Description": "' + DESCRIPTION + '"},'
            '{"Id": "t4", "Date": null}]}',
            '{"Id": null, "Title": "no id"}',
        ),
    )

    ready = await crafted_client.accounts_detail_async(request_id=UNKNOWN_REQUEST_ID)

    assert isinstance(ready, AccountsReady)
    first, second = ready.accounts
    assert (first.title, first.category, first.type, first.currency) == (None,) * 4
    assert (first.account_number, first.last_four, first.transactions) == (None, None, ())
    assert dataclasses.astuple(first.balance) == (None, None, None)
    assert dataclasses.astuple(second.balance) == (None, None, None)
    assert [(t.transaction_id, t.date, t.description) for t in second.transactions] == [
        ("t1", date(2025, 1, 31), ""),
        ("t2", date(2025, 1, 30), ""),
    ]
    (skipped,) = [r for r in caplog.records if r.getMessage() == "flinks.data_skipped"]
    assert (getattr(skipped, "accounts", None), getattr(skipped, "transactions", None)) == (1, 2)
    assert DESCRIPTION not in repr(vars(skipped))


@pytest.mark.parametrize(
    "transaction",
    [
        '{"Id": "t1", "Date": "31/01/2025"}',
        '{"Id": "t1", "Date": "2025-02-30"}',
        '{"Id": "t1", "Date": "2025-01-31", "Debit": 1e999999}',
        '{"Id": "t1", "Date": "2025-01-31", "Debit": NaN}',
        '{"Id": "t1", "Date": "2025-01-31", "Debit": true}',
    ],
    ids=["day-first", "no-such-day", "huge", "nan", "boolean"],
)
async def test_a_value_that_is_not_what_flinks_documents_fails_the_read(
    crafted: Crafted, crafted_client: FlinksClient, sleeps: RecordedSleeps, transaction: str
) -> None:
    crafted.answer(
        "GetAccountsDetail", accounts_body(f'{{"Id": "a1", "Transactions": [{transaction}]}}')
    )

    with pytest.raises(FlinksBadResponse) as bad:
        await crafted_client.accounts_detail(request_id=UNKNOWN_REQUEST_ID)

    assert bad.value.status == 200
    assert sleeps.delays == []


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (202, "not json", FlinksBadResponse),
        (201, "{}", FlinksBadResponse),
        (500, '{"FlinksCode": "AGGREGATION_ERROR"}', FlinksUnavailable),
    ],
)
async def test_other_answers_are_errors(
    crafted: Crafted,
    crafted_client: FlinksClient,
    status: int,
    body: str,
    error: type[Exception],
) -> None:
    crafted.answer("GetAccountsSummaryAsync", body, status)

    with pytest.raises(error):
        await crafted_client.accounts_summary_async(request_id=UNKNOWN_REQUEST_ID)


async def test_holder_and_identifiers_stay_out_of_every_repr(
    crafted: Crafted, crafted_client: FlinksClient
) -> None:
    account = (
        '{"Id": "a1", "AccountNumber": "' + ACCOUNT_NUMBER + '", "LastFourDigits": "'
        + LAST_FOUR + '", "Holder": {"Name": "' + HOLDER_NAME + '", "Email": "h@example.com"},'
        ' "TransitNumber": "77777", "Transactions": [{"Id": "t1", "Date": "2025-01-31",'
        ' "Description": "' + DESCRIPTION + '", "Debit": 1}]}'
    )  # fmt: skip
    crafted.answer("GetAccountsDetail", accounts_body(account))
    crafted.answer("GetAccountsSummary", '{"HttpStatusCode": 202, "RequestId": "x"}', 202)

    ready = await crafted_client.accounts_detail(request_id=UNKNOWN_REQUEST_ID)
    pending = await crafted_client.accounts_summary(request_id=UNKNOWN_REQUEST_ID)

    assert isinstance(ready, AccountsReady)
    assert pending == AccountsPending(request_id=UNKNOWN_REQUEST_ID)
    (acct,) = ready.accounts
    assert (acct.account_number, acct.last_four) == (ACCOUNT_NUMBER, LAST_FOUR)
    assert acct.transactions[0].description == DESCRIPTION
    shown = repr(ready) + repr(pending) + repr(acct) + repr(acct.transactions[0])
    for canary in (ACCOUNT_NUMBER, LAST_FOUR, DESCRIPTION, UNKNOWN_REQUEST_ID):
        assert canary not in shown
    assert HOLDER_NAME not in str(dataclasses.asdict(ready))
    assert "77777" not in str(dataclasses.asdict(ready))


async def test_the_api_key_goes_to_the_data_calls_and_delete_card_only(
    crafted: Crafted, crafted_client: FlinksClient
) -> None:
    crafted.answer("Authorize", '{"HttpStatusCode": 200, "RequestId": "r", "Login": {"Id": "l"}}')
    for endpoint in DATA_ENDPOINTS:
        crafted.answer(endpoint, accounts_body())
    crafted.answer("DeleteCard", '{"HttpStatusCode": 200, "Message": "gone"}')

    await crafted_client.authorize_cached(login_id="l")
    for read in READS.values():
        await read(crafted_client, UNKNOWN_REQUEST_ID)
    await crafted_client.delete_card(login_id="l")

    sent = {endpoint: headers.get("x-api-key") for endpoint, headers in crafted.requests}
    assert sent == {
        "GenerateAuthorizeToken": None,
        "Authorize": None,
        **dict.fromkeys(DATA_ENDPOINTS, API_KEY),
        "DeleteCard": API_KEY,
    }
    secret = {endpoint: headers.get("flinks-auth-key") for endpoint, headers in crafted.requests}
    assert secret["GenerateAuthorizeToken"] == SECRET
    assert all(secret[e] is None for e in (*DATA_ENDPOINTS, "DeleteCard"))
    json_posts = {"GetAccountsDetail", "GetAccountsSummary"}
    for endpoint, headers in crafted.requests:
        if endpoint in json_posts:
            assert headers["content-type"] == "application/json"
        assert headers["accept"] == "application/json"
