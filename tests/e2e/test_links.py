"""The demo page after linking (issue 14 item 6), in Chromium against the real BFF and sandbox:
the accounts and last transactions of a link, the "Linked accounts" list with Unlink, a reload
that rebuilds it all from the BFF, and in jwt mode the development "Sign in as" box.

Flinks prepares a link's data first (the sandbox answers the first GetAccountsDetail with 202),
so the page shows "Preparing your data…" and asks again after the BFF's Retry-After (10 s):
the waits for the data allow for that.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Locator, expect

from app.sandbox.data import ACCOUNTS
from tests.e2e.conftest import SCREENSHOTS, Demo, Stack

pytestmark = pytest.mark.e2e

# Retry-After is 10 s: one wait, on a loaded machine.
DATA_TIMEOUT_MS = 40_000
IDENTITY_KEY = "flinks-bff-demo.identity"
LINK = r"/v1/links/[A-Za-z0-9_-]{22}"


def link_greatday(demo: Demo) -> None:
    frame = demo.start_connect()
    demo.sign_in(frame, "Greatday")
    demo.answer_in_iframe(frame)
    expect(demo.status).to_have_attribute("data-state", "connected")


def links(demo: Demo) -> Locator:
    return demo.page.locator("#links-list li")


def digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def expect_pending_then_data(demo: Demo) -> None:
    """The first answer is 202: the page says so, then shows the data once it is ready."""
    status = demo.page.locator("#data-status")
    expect(status).to_contain_text("Preparing your data…")
    expect(status).to_have_attribute("data-state", "ready", timeout=DATA_TIMEOUT_MS)


def expect_greatday_data(demo: Demo, bearer: str | None = None) -> None:
    """Every sandbox account with its masked number and balance, and the first account's last
    10 transactions exactly as the BFF lists them."""
    page = demo.page
    expect(page.locator("#data-title")).to_have_text("Flinks Capital accounts")
    rows = page.locator("#accounts tbody tr")
    expect(rows).to_have_count(len(ACCOUNTS))
    for row, template in zip(rows.all(), ACCOUNTS, strict=True):
        cells = row.locator("td")
        expect(cells.nth(0)).to_have_text(template.title)
        expect(cells.nth(1)).to_have_text(template.type)
        expect(cells.nth(2)).to_have_text(f"•••• {digits(template.account_number)[-4:]}")
        balance = cells.nth(3).inner_text()
        assert template.currency in balance
        assert f"{template.current:,.2f}" in balance

    # The BFF's own answer, read with the page's cookies (and token): the page shows just that.
    link_id = page.locator("#links-list li.shown").get_attribute("data-link-id")
    assert link_id is not None
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    base = f"{demo.stack.base_url}/v1/links/{link_id}"
    accounts = page.request.get(f"{base}/accounts", headers=headers)
    assert accounts.status == 200
    first = accounts.json()["accounts"][0]
    answer = page.request.get(
        f"{base}/transactions",
        params={"account_id": first["account_id"], "limit": 10},
        headers=headers,
    )
    assert answer.status == 200
    transactions: list[dict[str, Any]] = answer.json()["transactions"]
    assert len(transactions) == 10

    expect(page.locator("#transactions-title")).to_have_text(
        f"Last transactions: {ACCOUNTS[0].title} •••• {first['mask']}"
    )
    shown = page.locator("#transactions tbody tr")
    expect(shown).to_have_count(10)
    for row, transaction in zip(shown.all(), transactions, strict=True):
        cells = row.locator("td")
        expect(cells.nth(0)).to_have_text(transaction["date"])
        expect(cells.nth(1)).to_have_text(transaction["description"])
        amount = cells.nth(2).inner_text()
        assert f"{abs(transaction['amount']):,.2f}" in amount
        assert amount.replace("\xa0", " ").startswith(
            "-CAD " if transaction["amount"] < 0 else "CAD "
        ), amount


def assert_nothing_secret(demo: Demo) -> None:
    """No loginId, full account number or RequestId in the page, and nothing of the data in
    the browser's storage."""
    content = demo.page.content()
    for complete in demo.completes():
        login_id = json.loads(complete.post_data or "{}")["login_id"]
        assert login_id not in content
    for template in ACCOUNTS:
        assert template.account_number not in content
    assert demo.page.evaluate("Object.keys(localStorage)") == []
    session: dict[str, str] = demo.page.evaluate("Object.assign({}, sessionStorage)")
    # At most the jwt mode's identity: the user name and the token, nothing of the bank.
    assert set(session) <= {IDENTITY_KEY}
    if session:
        assert set(json.loads(session[IDENTITY_KEY])) == {"sub", "token", "expires_at"}


def paths(demo: Demo, method: str, pattern: str) -> list[str]:
    return [urlsplit(r.url).path for r in demo.api_calls(method, pattern)]


# -- session mode --------------------------------------------------------------------------------


def test_session_link_shows_accounts_and_transactions_survives_a_reload_and_unlinks(
    demo: Demo, stack: Stack, http: httpx.Client
) -> None:
    page = demo.page
    demo.open()
    expect(page.locator("#identity")).to_be_hidden()  # session mode: nobody to sign in as
    expect(page.locator("#links-empty")).to_have_text("No linked accounts yet.")
    expect(page.locator("#data")).to_be_hidden()

    link_greatday(demo)
    expect(links(demo)).to_have_count(1)
    expect(links(demo).first).to_contain_text("Flinks Capital")
    expect_pending_then_data(demo)
    expect_greatday_data(demo)
    # One 202, then one 200: the page waited for Retry-After, it did not loop.
    assert len(paths(demo, "GET", f"{LINK}/accounts")) == 2
    assert len(paths(demo, "GET", f"{LINK}/transactions")) == 1
    assert_nothing_secret(demo)
    demo.screenshot(SCREENSHOTS / "demo-linked-accounts.png")

    # A reload rebuilds it all from the BFF (its cache: no waiting this time).
    page.reload()
    expect(links(demo)).to_have_count(1)
    expect(page.locator("#data-status")).to_have_attribute("data-state", "ready")
    expect_greatday_data(demo)
    expect(demo.status).to_have_attribute("data-state", "idle")  # no flow on this load
    assert_nothing_secret(demo)

    links(demo).first.get_by_role("button", name="Unlink").click()
    expect(page.locator("#links-empty")).to_have_text("No linked accounts yet.")
    expect(links(demo)).to_have_count(0)
    expect(page.locator("#data")).to_be_hidden()
    assert len(paths(demo, "DELETE", LINK)) == 1
    assert len(stack.calls(http, "DeleteCard")) == 1

    page.reload()
    expect(page.locator("#links-empty")).to_have_text("No linked accounts yet.")
    expect(page.locator("#data")).to_be_hidden()
    assert len(stack.calls(http, "DeleteCard")) == 1


# -- jwt mode with the development issuer ----------------------------------------------------------


def sign_in(demo: Demo, user: str) -> None:
    page = demo.page
    page.locator("#sign-in-name").fill(user)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#signed-in")).to_have_text(re.compile(rf"Signed in as {user}\."))


def sign_out(demo: Demo) -> None:
    demo.page.get_by_role("button", name="Sign out").click()
    expect(demo.page.locator("#sign-in-form")).to_be_visible()
    assert demo.page.evaluate(f"sessionStorage.getItem('{IDENTITY_KEY}')") is None


def bearer(demo: Demo) -> str:
    stored = demo.page.evaluate(f"sessionStorage.getItem('{IDENTITY_KEY}')")
    token: str = json.loads(stored)["token"]
    return token


@pytest.mark.parametrize("auth", ["jwt"])
def test_jwt_alice_links_sees_her_data_reloads_and_unlinks_and_bob_sees_none_of_it(
    demo: Demo, stack: Stack, http: httpx.Client
) -> None:
    page = demo.page
    demo.open()
    expect(page.locator("#identity")).to_be_visible()
    expect(page.locator("#connect-start")).to_be_disabled()
    expect(page.locator("#links-empty")).to_have_text("Sign in to see your linked accounts.")

    sign_in(demo, "alice")
    expect(page.locator("#connect-start")).to_be_enabled()
    expect(page.locator("#links-empty")).to_have_text("No linked accounts yet.")
    link_greatday(demo)
    expect(links(demo)).to_have_count(1)
    expect_pending_then_data(demo)
    alice = bearer(demo)
    expect_greatday_data(demo, alice)
    link_id = links(demo).first.get_attribute("data-link-id")
    assert_nothing_secret(demo)

    # A reload: still alice (the tab's sessionStorage), her link and its data from the BFF.
    page.reload()
    expect(page.locator("#signed-in")).to_contain_text("Signed in as alice.")
    expect(links(demo)).to_have_count(1)
    expect(page.locator("#data-status")).to_have_attribute("data-state", "ready")
    expect_greatday_data(demo, alice)

    # Every call to the BFF's API carried alice's token (the first ones, before she signed
    # in, were not made at all).
    api_calls = demo.api_calls("GET", r"/v1/.*") + demo.api_calls("POST", r"/v1/.*")
    assert api_calls
    for request in api_calls:
        assert request.all_headers().get("authorization") == f"Bearer {alice}", request.url

    # Bob sees none of it: not in his list, and his token cannot read alice's link.
    sign_out(demo)
    expect(links(demo)).to_have_count(0)
    expect(page.locator("#data")).to_be_hidden()
    sign_in(demo, "bob")
    expect(page.locator("#links-empty")).to_have_text("No linked accounts yet.")
    expect(links(demo)).to_have_count(0)
    expect(page.locator("#data")).to_be_hidden()
    bob = {"Authorization": f"Bearer {bearer(demo)}"}
    base = f"{stack.base_url}/v1/links/{link_id}"
    assert page.request.get(f"{base}/accounts", headers=bob).status == 404
    assert page.request.get(f"{base}/transactions", headers=bob).status == 404
    assert page.request.delete(base, headers=bob).status == 404
    assert stack.calls(http, "DeleteCard") == []

    # Alice again: her link is there, and she unlinks it.
    sign_out(demo)
    sign_in(demo, "alice")
    expect(links(demo)).to_have_count(1)
    expect(page.locator("#data-status")).to_have_attribute("data-state", "ready")
    links(demo).first.get_by_role("button", name="Unlink").click()
    expect(page.locator("#links-empty")).to_have_text("No linked accounts yet.")
    expect(page.locator("#data")).to_be_hidden()
    assert len(stack.calls(http, "DeleteCard")) == 1
    page.reload()
    expect(page.locator("#signed-in")).to_contain_text("Signed in as alice.")
    expect(page.locator("#links-empty")).to_have_text("No linked accounts yet.")
    assert len(stack.calls(http, "DeleteCard")) == 1


@pytest.mark.parametrize("auth", ["jwt"])
def test_jwt_oauth_starts_with_a_fetch_that_carries_the_token(demo: Demo, stack: Stack) -> None:
    """A navigation carries no bearer token: in jwt mode the page starts OAuth with a POST and
    then goes to the bank; the flow comes back connected to the same user."""
    page = demo.page
    demo.open()
    sign_in(demo, "carol")
    page.get_by_role("link", name="Link with OAuth").click()
    page.wait_for_url(f"{stack.sandbox.base_url}/oauth/bank/**")
    page.locator("#username").fill("greatday_nomfa")
    page.locator("#password").fill("Everyday")
    page.locator("#sign-in").click()

    expect(demo.status).to_have_attribute("data-state", "connected")
    expect(demo.status).to_contain_text("Linked with OAuth.")
    [start] = demo.api_calls("POST", r"/v1/oauth/sessions")
    assert start.all_headers().get("authorization") == f"Bearer {bearer(demo)}"
    assert demo.api_calls("GET", r"/v1/oauth/start") == []
    expect(links(demo)).to_have_count(1)
    expect_pending_then_data(demo)
    expect(page.locator("#accounts tbody tr")).to_have_count(len(ACCOUNTS))
    expect(page.locator("#transactions tbody tr")).to_have_count(10)
