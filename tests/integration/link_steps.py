"""Links as tests drive them through the BFF's API: connect an account, read its data until
Flinks has it ready, page through transactions, and what the host backend and a jwt-mode user
need (a service token, a bearer from the sandbox's dev issuer)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import httpx
import pytest

import app.main
from app.flows import FlowConfig
from app.settings import Settings
from tests.integration.conftest import Sandbox
from tests.integration.connect_steps import complete, start
from tests.waiting import wait_until_async

# The users that connect through Connect (a cached /Authorize: no question asked again).
CONNECTING_USERS = (
    "greatday_nomfa",
    "Greatday",
    "test_mfa_question_choices",
    "test_mfa_multiple_choice",
    "test_mfa_multiple_answers",
    "test_mfa_image",
    "test_mfa_text_or_call",
)
# The fields a link shows a browser, an account, a transaction.
LINK_FIELDS = {"link_id", "institution", "status", "created_at", "refreshed_at"}
ACCOUNT_FIELDS = {"account_id", "name", "category", "type", "mask", "currency", "balance"}
TRANSACTION_FIELDS = {"account_id", "date", "description", "amount", "balance"}
# A poll gap short enough to wait out in a test (Flinks' own is 10 s, kept in Redis with PX,
# which a fake clock does not move).
SHORT_GAP = timedelta(milliseconds=200)


@dataclass(frozen=True)
class Linked:
    """A Connect flow that connected: its flow, the link it made and the loginId behind it."""

    flow_id: str
    link_id: str
    login_id: str


def short_poll_gap(monkeypatch: pytest.MonkeyPatch, gap: timedelta = SHORT_GAP) -> None:
    """Apps created after this ask Flinks for a link's data at most every `gap`: the app's
    flow configuration (`app.main._flow_config`) with `LinkPolicy.poll_gap` replaced."""
    original: Callable[[Settings], FlowConfig] = app.main._flow_config

    def patched(settings: Settings) -> FlowConfig:
        config = original(settings)
        return replace(config, links=replace(config.links, poll_gap=gap))

    monkeypatch.setattr(app.main, "_flow_config", patched)


async def connect(
    client: httpx.AsyncClient,
    sandbox: Sandbox,
    username: str = "greatday_nomfa",
    *,
    login_id: str | None = None,
) -> Linked:
    """A Connect flow completed with a saved loginId of `username` (or the given one)."""
    started = await start(client)
    login_id = login_id or await sandbox.issue_login(username)
    response = await complete(client, started["flow_id"], login_id)
    assert response.status_code == 200, response.text
    flow = response.json()
    assert flow["status"] == "connected", flow
    assert isinstance(flow["link_id"], str), flow
    return Linked(started["flow_id"], flow["link_id"], login_id)


async def accounts_when_ready(client: httpx.AsyncClient, link_id: str) -> dict[str, Any]:
    """Reads the link's accounts until they are no longer pending (each 202 checked)."""

    async def ready() -> dict[str, Any]:
        response = await client.get(f"/v1/links/{link_id}/accounts")
        if response.status_code == 202:
            assert response.json() == {"status": "pending"}
            assert int(response.headers["retry-after"]) >= 1
            return {}  # not yet
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    return await wait_until_async(ready, what="the link's accounts", interval=0.05)


async def all_transactions(
    client: httpx.AsyncClient, link_id: str, **params: str | int
) -> tuple[list[dict[str, Any]], int]:
    """Every page of the link's transactions for one query (the data must be ready): the
    transactions in order, and the number of pages."""
    transactions: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get(f"/v1/links/{link_id}/transactions", params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"transactions", "next_cursor"}
        transactions.extend(body["transactions"])
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return transactions, pages
        assert pages < 1000, "the cursor never ends"


def service_token() -> tuple[str, str]:
    """A new service token and the SHA-256 hex digest BFF_SERVICE_TOKENS holds of it."""
    token = secrets.token_urlsafe(32)
    return token, hashlib.sha256(token.encode()).hexdigest()


def jwt_settings(sandbox: Sandbox) -> dict[str, str]:
    """BFF settings for jwt mode with the sandbox's dev issuer (app/sandbox/dev_identity.py)."""
    issuer = f"{sandbox.base_url}/__sandbox/identity"
    return {
        "BFF_AUTH": "jwt",
        "BFF_JWT_JWKS_URL": f"{issuer}/jwks.json",
        "BFF_JWT_ISSUER": issuer,
        "BFF_JWT_AUDIENCE": "flinks-bff",
        "BFF_JWT_ALGORITHMS": "ES256",
    }


async def bearer(sandbox: Sandbox, sub: str) -> dict[str, str]:
    """An Authorization header for user `sub`, signed by the sandbox's dev issuer."""
    response = await sandbox.http.post("/__sandbox/identity/token", json={"sub": sub})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}
