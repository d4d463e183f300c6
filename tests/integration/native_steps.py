"""A native app's OAuth handoff (RFC 8252 + RFC 7636), as tests drive it: the "app" (its own HTTP
client and cookie jar, or a bearer token) starts the flow with a PKCE challenge; the "system
browser" (another client, with no cookie of the app's) goes to the bank and back through the
BFF's callback; the app redeems the handoff code with its verifier.

Every response the BFF gives either client is kept (`Seen`), so a test can show that a loginId
never reached the app or the browser from the BFF."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.integration.conftest import Sandbox
from tests.integration.oauth_steps import bank_login
from tests.sandbox.server import SandboxHandle

# The app's return URL: an https Universal Link / App Link (BFF_RETURN_URLS), not a web page.
RETURN_URL = "https://app.example.com/flinks/return"
# The one refusal every failed handoff answers with.
REFUSED = "handoff_invalid"


@dataclass(frozen=True)
class Pkce:
    """RFC 7636: the verifier the app keeps, and the S256 challenge it sends at the start."""

    verifier: str
    challenge: str

    @classmethod
    def new(cls) -> Pkce:
        verifier = secrets.token_urlsafe(32)  # 43 characters of the unreserved set
        digest = hashlib.sha256(verifier.encode("ascii")).digest()
        return cls(verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode())


@dataclass
class Seen:
    """What the BFF answered a client: each response's headers and body, as text."""

    texts: list[str] = field(default_factory=list)

    async def keep(self, response: httpx.Response) -> None:
        await response.aread()
        self.texts.append("\n".join([*response.headers.values(), response.text]))

    def hooks(self) -> dict[str, list[Any]]:
        return {"response": [self.keep]}

    def shows(self, value: str) -> bool:
        return any(value in text for text in self.texts)


def replica_env(sandbox: SandboxHandle, redis_url: str, **extra: str) -> dict[str, str]:
    """The configuration every `flinks-bff serve` replica shares (one Redis, one sealing key)."""
    return {
        "REDIS_URL": redis_url,
        "FLINKS_API_URL": sandbox.base_url,
        "FLINKS_CONNECT_URL": f"{sandbox.base_url}/v2/",
        "FLINKS_CUSTOMER_ID": sandbox.customer_id,
        "FLINKS_SECRET_KEY": sandbox.settings.secret_key,
        "FLINKS_API_KEY": sandbox.settings.api_key,
        "FLINKS_DEMO": "true",
        "BFF_RATE_LIMIT_IP": "0",
        "BFF_RATE_LIMIT_SESSION": "0",
        "BFF_RETURN_URLS": RETURN_URL,
        "BFF_ENCRYPTION_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        **extra,
    }


@dataclass(frozen=True)
class Handoff:
    """Where the system browser came back to the app: the flow, its one-time code, the
    verifier only the app holds, and the loginId the bank sent (which the app must never see)."""

    flow_id: str
    code: str
    pkce: Pkce
    login_id: str
    callback_path: str


async def start(
    app: httpx.AsyncClient,
    bff: str,
    pkce: Pkce | None,
    *,
    headers: Mapping[str, str] | None = None,
    fields: Mapping[str, object] | None = None,
) -> httpx.Response:
    """`POST /v1/oauth/sessions` as the app sends it (with its challenge, when given)."""
    body: dict[str, object] = {"institution": "FlinksCapital", "return_url": RETURN_URL}
    if pkce is not None:
        body |= {"code_challenge": pkce.challenge, "code_challenge_method": "S256"}
    return await app.post(
        f"{bff}/v1/oauth/sessions", json={**body, **(fields or {})}, headers=headers
    )


async def callback(browser: httpx.AsyncClient, bff: str, path_and_query: str) -> httpx.Response:
    """The bank's redirect reaching the BFF's callback in the system browser (a navigation)."""
    return await browser.get(bff + path_and_query, headers={"Accept": "text/html"})


def app_return(response: httpx.Response) -> dict[str, list[str]]:
    """The query of the app's return URL the callback sent the browser to (shape checked)."""
    assert response.status_code == 303, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == RETURN_URL
    return parse_qs(location.query)


async def handed_off(
    app: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    sandbox: Sandbox,
    *,
    start_on: str,
    callback_on: str,
    username: str = "greatday_nomfa",
    headers: Mapping[str, str] | None = None,
) -> Handoff:
    """The app starts (on `start_on`), the browser signs in at the bank and comes back through
    the callback (on `callback_on`): the handoff the app now holds."""
    pkce = Pkce.new()
    started = await start(app, start_on, pkce, headers=headers)
    assert started.status_code == 201, started.text
    body = started.json()
    assert set(body) == {"flow_id", "authorize_url", "expires_at"}
    bank = await bank_login(sandbox.http, body["authorize_url"], username)
    assert bank.login_id is not None
    query = app_return(await callback(browser, callback_on, bank.path_and_query))
    assert set(query) == {"flow_id", "handoff_code"}, query
    assert query["flow_id"] == [body["flow_id"]]
    return Handoff(
        body["flow_id"], query["handoff_code"][0], pkce, bank.login_id, bank.path_and_query
    )


async def redeem(
    app: httpx.AsyncClient,
    bff: str,
    flow_id: str,
    code: str,
    verifier: str,
    *,
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """`POST /v1/flows/{flow_id}/handoff` under the app's identity."""
    return await app.post(
        f"{bff}/v1/flows/{flow_id}/handoff",
        json={"handoff_code": code, "code_verifier": verifier},
        headers=headers,
    )


def assert_refused(response: httpx.Response) -> None:
    """The one answer to every refused handoff: 400 `handoff_invalid`, problem+json."""
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == REFUSED, response.text
