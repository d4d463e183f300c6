"""BFF_AUTH at the API: what each mode believes and refuses, who may mint a bare token, and the
steps reached by browser navigation (the OAuth callback) staying bound to the browser in jwt mode.

The JWTs come from the sandbox's dev issuer over HTTP, or are forged here from its real key set.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from redis.asyncio import Redis

from app.main import create_app
from tests.conftest import issue_session, serve_in_process
from tests.integration.conftest import Sandbox, bff_settings
from tests.integration.link_steps import bearer, jwt_settings
from tests.integration.oauth_steps import RETURN_URL, bank_login

ALLOWED_ORIGIN = "http://127.0.0.1:8000"
LINKS = "/v1/links"


def _problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    return body


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    head = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
    return head + "." + _b64(signature)


async def test_session_mode_mints_only_for_an_issued_session_from_an_allowed_origin(
    redis_url: str, redis: Redis, sandbox: Sandbox
) -> None:
    async with serve_in_process(create_app(bff_settings(redis_url, sandbox))) as client:
        # Anonymous: no cookie, no Origin, an empty body (the hostile review's request).
        _problem(await client.post("/v1/authorize-tokens"), 401, "unauthenticated")
        _problem(
            await client.post("/v1/authorize-tokens", json={}, headers={"Origin": ALLOWED_ORIGIN}),
            401,
            "unauthenticated",
        )
        # A cookie value the BFF never issued is no session.
        client.cookies.set("flinks_bff_session", "A" * 43)
        _problem(
            await client.post("/v1/authorize-tokens", json={}, headers={"Origin": ALLOWED_ORIGIN}),
            401,
            "unauthenticated",
        )
        await issue_session(client, redis_url)
        del client.headers["Origin"]
        _problem(await client.post("/v1/authorize-tokens", json={}), 401, "unauthenticated")
        evil = {"Origin": "https://evil.example"}
        _problem(
            await client.post("/v1/authorize-tokens", json={}, headers=evil),
            403,
            "origin_not_allowed",
        )
        assert await sandbox.calls("GenerateAuthorizeToken") == []
        minted = await client.post(
            "/v1/authorize-tokens", json={}, headers={"Origin": ALLOWED_ORIGIN}
        )
        assert minted.status_code == 201, minted.text
        assert len(await sandbox.calls("GenerateAuthorizeToken")) == 1


async def test_header_mode_believes_the_header_only_from_the_trusted_proxy(
    redis_url: str, redis: Redis, sandbox: Sandbox
) -> None:
    # The ASGI test client's peer is 127.0.0.1.
    trusted = bff_settings(redis_url, sandbox, BFF_AUTH="header", BFF_TRUSTED_PROXIES="127.0.0.1")
    async with serve_in_process(create_app(trusted)) as client:
        alice = {"X-Auth-Request-User": "alice@example.com"}
        started = await client.post("/v1/connect/sessions", json={}, headers=alice)
        assert started.status_code == 201, started.text
        flow = f"/v1/flows/{started.json()['flow_id']}"
        assert (await client.get(flow, headers=alice)).status_code == 200
        assert (await client.get(LINKS, headers=alice)).json() == {"links": []}
        minted = await client.post("/v1/authorize-tokens", json={}, headers=alice)
        assert minted.status_code == 201
        # Another user named by the proxy does not see alice's flow.
        bob = {"X-Auth-Request-User": "bob@example.com"}
        _problem(await client.get(flow, headers=bob), 404, "flow_not_found")
        # No header: no identity, even with the browser session alice's start set.
        _problem(await client.get(LINKS), 401, "unauthenticated")
        _problem(await client.get(flow), 401, "unauthenticated")
        two = [("X-Auth-Request-User", "alice@example.com"), ("X-Auth-Request-User", "mallory")]
        _problem(await client.get(LINKS, headers=two), 401, "unauthenticated")

    untrusted = bff_settings(
        redis_url, sandbox, BFF_AUTH="header", BFF_TRUSTED_PROXIES="10.0.0.0/8"
    )
    async with serve_in_process(create_app(untrusted)) as client:
        for path in (LINKS, flow):
            _problem(await client.get(path, headers=alice), 401, "unauthenticated")
        refused = await client.post("/v1/connect/sessions", json={}, headers=alice)
        _problem(refused, 401, "unauthenticated")
    assert len(await sandbox.calls("GenerateAuthorizeToken")) == 2  # the two trusted starts


async def test_jwt_mode_refuses_forged_and_foreign_tokens(
    redis_url: str, redis: Redis, sandbox: Sandbox
) -> None:
    settings = bff_settings(redis_url, sandbox, **jwt_settings(sandbox))
    issuer = settings.bff_jwt_issuer
    jwks = (await sandbox.http.get("/__sandbox/identity/jwks.json")).json()
    kid = jwks["keys"][0]["kid"]
    public_pem = jwt.PyJWK(jwks["keys"][0]).key.public_bytes(
        encoding=Encoding.PEM, format=PublicFormat.SubjectPublicKeyInfo
    )
    now = int(time.time())
    claims = {"sub": "mallory", "iss": issuer, "aud": "flinks-bff", "exp": now + 600, "iat": now}
    none_token = _unsigned({"alg": "none", "typ": "JWT", "kid": kid}, claims)
    head = _unsigned({"alg": "HS256", "typ": "JWT", "kid": kid}, claims).rsplit(".", 1)[0]
    hs256 = hmac.new(public_pem, head.encode(), hashlib.sha256).digest()
    hs_token = head + "." + _b64(hs256)
    foreign = await sandbox.http.post(
        "/__sandbox/identity/token", json={"sub": "alice", "audience": "another-app"}
    )
    async with serve_in_process(create_app(settings)) as client:
        missing = _problem(await client.get(LINKS), 401, "unauthenticated")
        assert "request_id" in missing
        for token in (none_token, hs_token, foreign.json()["token"], "not.a.jwt", "x" * 40):
            response = await client.get(LINKS, headers={"Authorization": f"Bearer {token}"})
            _problem(response, 401, "unauthenticated")
            assert 'error="invalid_token"' in response.headers["www-authenticate"]
        assert (await client.get(LINKS)).headers["www-authenticate"].startswith("Bearer")
        # Basic or a malformed scheme is no bearer token.
        basic = await client.get(LINKS, headers={"Authorization": "Basic YWxpY2U6eA=="})
        _problem(basic, 401, "unauthenticated")
        # A real token works, and minting needs nothing else.
        alice = await bearer(sandbox, "alice")
        assert (await client.get(LINKS, headers=alice)).json() == {"links": []}
        assert (
            await client.post("/v1/authorize-tokens", json={}, headers=alice)
        ).status_code == 201
        _problem(await client.post("/v1/authorize-tokens", json={}), 401, "unauthenticated")


async def test_jwt_mode_oauth_callback_is_bound_to_the_browser_that_started(
    redis_url: str, redis: Redis, sandbox: Sandbox
) -> None:
    settings = bff_settings(redis_url, sandbox, **jwt_settings(sandbox))
    async with serve_in_process(create_app(settings)) as browser:
        alice = await bearer(sandbox, "alice")
        started = await browser.post(
            "/v1/oauth/sessions",
            json={"institution": "FlinksCapital", "return_url": RETURN_URL},
            headers=alice,
        )
        assert started.status_code == 201, started.text
        flow_id = started.json()["flow_id"]
        callback = await bank_login(sandbox.http, started.json()["authorize_url"], "greatday_nomfa")
        # The bank's redirect carries no bearer token: the browser's cookie binds it.
        back = await browser.get(callback.path_and_query)
        assert back.status_code == 303, back.text
        assert "status=connected" in back.headers["location"]
        flow = (await browser.get(f"/v1/flows/{flow_id}", headers=alice)).json()
        assert flow["status"] == "connected"
        links = (await browser.get(LINKS, headers=alice)).json()["links"]
        assert [link["link_id"] for link in links] == [flow["link_id"]]
        # Without the bearer the flow is not readable: the cookie only binds the navigation.
        _problem(await browser.get(f"/v1/flows/{flow_id}"), 401, "unauthenticated")
        bob = await bearer(sandbox, "bob")
        _problem(await browser.get(f"/v1/flows/{flow_id}", headers=bob), 404, "flow_not_found")
        assert (await browser.get(LINKS, headers=bob)).json() == {"links": []}
