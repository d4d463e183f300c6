"""Security headers on every route, CORS, CSRF checks, cookie attributes and rate limits."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from app.main import create_app
from app.settings import Settings
from tests.conftest import issue_session, serve_in_process
from tests.integration.conftest import Sandbox, bff_settings

EVIL = "https://evil.example"
ALLOWED = "http://localhost:8000"


def _requests_for(document: dict[str, Any]) -> list[tuple[str, str]]:
    """One request per operation of the OpenAPI document, path parameters filled in."""
    requests = []
    for path, operations in document["paths"].items():
        concrete = path.replace("{flow_id}", "A" * 22)
        requests += [(method.upper(), concrete) for method in operations]
    return requests


async def test_every_route_carries_the_security_headers(
    settings: Settings, client: httpx.AsyncClient
) -> None:
    document = (await client.get("/openapi.json")).json()
    requests = _requests_for(document)
    assert len(requests) >= 8
    # Not in the document: the demo, the probes and metrics, and an unknown path.
    extra = [("GET", "/"), ("GET", "/web/app.js"), ("GET", "/nope")]
    extra += [("GET", "/livez"), ("GET", "/readyz"), ("GET", "/metrics")]
    for method, path in requests + extra:
        response = await client.request(
            method, path, json={} if method == "POST" else None, follow_redirects=False
        )
        assert response.status_code < 500, (method, path, response.text)
        headers = response.headers
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["x-frame-options"] == "DENY", path
        assert headers["referrer-policy"] == "no-referrer", path
        assert "frame-ancestors 'none'" in headers["content-security-policy"], path
        assert "strict-transport-security" not in headers  # plain-http development
        assert "x-request-id" in headers
        if path.startswith(("/v1/", "/livez", "/readyz", "/metrics")):
            assert headers["cache-control"] == "no-store", path
        if path == "/":
            csp = headers["content-security-policy"]
            assert "script-src 'self'" in csp
            assert f"frame-src {settings.connect_origin}" in csp
        elif path.startswith("/v1/"):
            assert headers["content-security-policy"].startswith("default-src 'none'")


async def test_hsts_and_host_prefixed_secure_cookie_when_served_over_https(
    redis_url: str, redis: Redis, sandbox: Sandbox
) -> None:
    settings = bff_settings(
        redis_url,
        sandbox,
        BFF_PUBLIC_URL="https://bff.example.com",
        BFF_RETURN_URLS="https://app.example.com/",
        BFF_CORS_ORIGINS="https://app.example.com",
    )
    async with serve_in_process(create_app(settings)) as client:
        response = await client.post("/v1/connect/sessions", json={})
        assert response.status_code == 201
        assert response.headers["strict-transport-security"].startswith("max-age=31536000")
        cookie = response.headers["set-cookie"]
        assert cookie.startswith("__Host-flinks_bff_session=")
        for attribute in ("HttpOnly", "Secure", "Path=/", "SameSite=lax"):
            assert attribute.lower() in cookie.lower()
        assert "domain=" not in cookie.lower()


async def test_local_cookie_attributes(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/connect/sessions", json={})
    cookie = response.headers["set-cookie"].lower()
    assert cookie.startswith("flinks_bff_session=")
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert "path=/" in cookie
    assert "domain=" not in cookie
    # A second flow in the same browser keeps the same session (parallel tabs).
    again = await client.post("/v1/connect/sessions", json={})
    assert "set-cookie" not in again.headers


async def test_cors_is_an_exact_allow_list_with_credentials(client: httpx.AsyncClient) -> None:
    preflight = await client.options(
        "/v1/connect/sessions",
        headers={"Origin": ALLOWED, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == ALLOWED
    assert preflight.headers["access-control-allow-credentials"] == "true"
    assert "POST" in preflight.headers["access-control-allow-methods"]

    refused = await client.options(
        "/v1/connect/sessions",
        headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"},
    )
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers

    for origin, allowed in ((ALLOWED, True), (EVIL, False), ("null", False)):
        response = await client.get("/livez", headers={"Origin": origin})
        assert ("access-control-allow-origin" in response.headers) is allowed
        assert response.headers["vary"] == "Origin"


async def test_cross_site_writes_are_refused_before_anything_happens(
    client: httpx.AsyncClient, sandbox: Sandbox, redis_url: str
) -> None:
    for path in ("/v1/authorize-tokens", "/v1/connect/sessions", "/v1/oauth/sessions"):
        form = await client.post(
            path, content=b"a=b", headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        plain = await client.post(path, content=b"{}", headers={"Content-Type": "text/plain"})
        multipart = await client.post(path, files={"f": b"x"})
        foreign = await client.post(path, json={}, headers={"Origin": EVIL})
        for response, status in ((form, 415), (plain, 415), (multipart, 415), (foreign, 403)):
            assert response.status_code == status, (path, response.text)
            assert response.headers["content-type"] == "application/problem+json"
    assert await sandbox.calls() == []
    # The same requests from an allowed origin go through (minting: with a session).
    await issue_session(client, redis_url)
    allowed = await client.post("/v1/authorize-tokens", json={}, headers={"Origin": ALLOWED})
    assert allowed.status_code == 201
    assert allowed.headers["access-control-allow-origin"] == ALLOWED


async def test_no_state_changes_on_get(client: httpx.AsyncClient, sandbox: Sandbox) -> None:
    document = (await client.get("/openapi.json")).json()
    gets = [p for p, ops in document["paths"].items() if "get" in ops]
    changing = {"/v1/oauth/start", "/v1/oauth/callback"}  # the OAuth navigations
    for path in gets:
        if path in changing:
            continue
        await client.get(path.replace("{flow_id}", "A" * 22))
    assert await sandbox.calls() == []


@pytest.fixture
def limited_settings(redis_url: str, redis: Redis, sandbox: Sandbox) -> Any:
    return bff_settings(
        redis_url,
        sandbox,
        BFF_RATE_LIMIT_IP=4,
        BFF_RATE_LIMIT_SESSION=2,
        BFF_RATE_LIMIT_WINDOW=30,
        BFF_TRUSTED_PROXIES="127.0.0.1",
    )


async def test_token_minting_is_limited_per_ip_across_replicas(limited_settings: Any) -> None:
    replica_a, replica_b = create_app(limited_settings), create_app(limited_settings)
    async with serve_in_process(replica_a) as a, serve_in_process(replica_b) as b:
        for replica in (a, b):
            await issue_session(replica, str(limited_settings.redis_url))
        statuses = [
            (await (a if i % 2 else b).post("/v1/authorize-tokens", json={})).status_code
            for i in range(6)
        ]
        assert statuses == [201, 201, 201, 201, 429, 429]
        refused = await a.post("/v1/authorize-tokens", json={})
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == "rate_limited"
        assert 1 <= int(refused.headers["retry-after"]) <= 30
        # Behind a trusted proxy, the client's own address counts (a new session: this one has
        # used its own allowance).
        await issue_session(a, str(limited_settings.redis_url))
        other = await a.post(
            "/v1/authorize-tokens", json={}, headers={"X-Forwarded-For": "203.0.113.7"}
        )
        assert other.status_code == 201


async def test_forwarded_for_is_ignored_from_untrusted_peers(
    redis_url: str, redis: Redis, sandbox: Sandbox
) -> None:
    settings = bff_settings(redis_url, sandbox, BFF_RATE_LIMIT_IP=2, BFF_RATE_LIMIT_SESSION=0)
    async with serve_in_process(create_app(settings)) as client:
        await issue_session(client, redis_url)
        statuses = [
            (
                await client.post(
                    "/v1/authorize-tokens", json={}, headers={"X-Forwarded-For": f"198.51.100.{i}"}
                )
            ).status_code
            for i in range(3)
        ]
    assert statuses == [201, 201, 429]


async def test_flow_starts_are_limited_per_session(
    redis_url: str, redis: Redis, sandbox: Sandbox
) -> None:
    settings = bff_settings(redis_url, sandbox, BFF_RATE_LIMIT_IP=10, BFF_RATE_LIMIT_SESSION=2)
    app = create_app(settings)
    async with serve_in_process(app) as client:
        # The first start has no session yet (it creates it); the session then gets two more.
        statuses = [
            (await client.post("/v1/connect/sessions", json={})).status_code for _ in range(4)
        ]
        assert statuses == [201, 201, 201, 429]
        client.cookies.clear()  # another browser on the same address still has room
        assert (await client.post("/v1/connect/sessions", json={})).status_code == 201


async def test_cross_site_writes_without_origin_are_refused_by_fetch_metadata(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    for path in ("/v1/authorize-tokens", "/v1/connect/sessions", "/v1/oauth/sessions"):
        for site in ("cross-site", "Cross-Site "):
            refused = await client.post(path, json={}, headers={"Sec-Fetch-Site": site})
            assert refused.status_code == 403, (path, site, refused.text)
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.json()["code"] == "origin_not_allowed"
        foreign = await client.post(
            path, json={}, headers={"Sec-Fetch-Site": "cross-site", "Origin": EVIL}
        )
        assert foreign.status_code == 403
    assert await sandbox.calls() == []
    # What a browser sends from the BFF's own pages, a sibling site, the address bar; an
    # allowed frontend on another site (it sends its Origin); and a non-browser client.
    for headers in (
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "same-site"},
        {"Sec-Fetch-Site": "none"},
        {"Sec-Fetch-Site": "cross-site", "Origin": ALLOWED},
        {},
    ):
        response = await client.post("/v1/connect/sessions", json={}, headers=headers)
        assert response.status_code == 201, (headers, response.text)
    # Reads change nothing: a cross-site GET is left to CORS (here: no such flow, not 403).
    status = await client.get(f"/v1/flows/{'A' * 22}", headers={"Sec-Fetch-Site": "cross-site"})
    assert status.status_code == 404
