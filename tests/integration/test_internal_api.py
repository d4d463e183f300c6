"""The host backend's way to a loginId (`/internal/v1`): a service token whose SHA-256 digest is
in BFF_SERVICE_TOKENS, and never a browser (no CORS, cookies ignored, Origin or Fetch Metadata
refused). The BFF in process; links made by real Connect flows against the sandbox."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

import httpx
import pytest
from redis.asyncio import Redis

from app.main import create_app
from app.store import PREFIX
from tests.conftest import BASE_URL, serve_in_process
from tests.integration.conftest import Sandbox, bff_settings
from tests.integration.link_steps import connect, service_token

ALLOWED_ORIGIN = "http://127.0.0.1:8000"  # one of the BFF's own origins (BFF_CORS_ORIGINS)


@dataclass
class Host:
    """The running BFF, the token the host backend holds, and a browser's client."""

    browser: httpx.AsyncClient
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def backend(self, **headers: str) -> httpx.AsyncClient:
        """A client with no cookie jar of the browser's: the host backend."""
        return httpx.AsyncClient(
            transport=self.browser._transport,
            base_url=str(self.browser.base_url),
            headers=headers,
        )


@pytest.fixture
async def host(redis_url: str, redis: Redis, sandbox: Sandbox) -> AsyncIterator[Host]:
    token, digest = service_token()
    _, other_digest = service_token()
    settings = bff_settings(redis_url, sandbox, BFF_SERVICE_TOKENS=f"{other_digest},{digest}")
    async with serve_in_process(create_app(settings)) as browser:
        yield Host(browser, token)


def _bff_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """What the BFF logged: not the test's own client's request lines (httpx logs every
    request it sends, URL included, at INFO)."""
    return [
        r
        for r in caplog.records
        if not (r.name == "httpx" and str(r.getMessage()).find(f" {BASE_URL}/") >= 0)
    ]


async def _owner(redis: Redis) -> str:
    """The owner the link is filed under (the browser session's, in session mode)."""
    (key,) = [k async for k in redis.scan_iter(f"{PREFIX}session:*")]
    return str(await redis.get(key))


async def test_a_service_token_reads_a_link_with_its_login_id(
    host: Host, sandbox: Sandbox, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    linked = await connect(host.browser, sandbox)
    owner = await _owner(redis)
    async with host.backend(**host.auth) as backend:
        with caplog.at_level(logging.DEBUG):
            response = await backend.get(f"/internal/v1/links/{linked.link_id}")
            listed = await backend.get(f"/internal/v1/owners/{owner}/links")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"link_id", "owner", "institution", "login_id", "created_at"}
    assert body["link_id"] == linked.link_id
    assert body["owner"] == owner
    assert body["institution"] == "FlinksCapital"
    assert body["login_id"] == linked.login_id
    assert isinstance(datetime.fromisoformat(body["created_at"]), datetime)
    assert response.headers["cache-control"] == "no-store"
    assert "access-control-allow-origin" not in response.headers

    assert listed.status_code == 200, listed.text
    assert listed.json() == {"links": [body]}

    audit = [r for r in caplog.records if r.name == "app.audit"]
    assert [r.getMessage() for r in audit] == ["internal.link_read", "internal.owner_links_read"]
    for record in _bff_records(caplog):
        logged = f"{record.getMessage()} {record.args!r} {vars(record)!r}"
        for secret in (linked.login_id, host.token, owner):
            assert secret not in logged, (secret, record.getMessage())


async def test_an_owner_listing_holds_only_that_owners_links(
    host: Host, sandbox: Sandbox, redis: Redis
) -> None:
    first = await connect(host.browser, sandbox)
    second = await connect(host.browser, sandbox, "Greatday")
    owner = await _owner(redis)
    async with host.backend() as other_browser:
        third = await connect(other_browser, sandbox, "test_mfa_image")
    async with host.backend(**host.auth) as backend:
        mine = (await backend.get(f"/internal/v1/owners/{owner}/links")).json()["links"]
        nobody = await backend.get("/internal/v1/owners/nobody-at-all/links")
        deleted = await host.browser.delete(f"/v1/links/{second.link_id}")
        after = (await backend.get(f"/internal/v1/owners/{owner}/links")).json()["links"]
        gone = await backend.get(f"/internal/v1/links/{second.link_id}")
    assert {link["link_id"] for link in mine} == {first.link_id, second.link_id}
    assert {link["login_id"] for link in mine} == {first.login_id, second.login_id}
    assert third.link_id not in str(mine)
    assert nobody.status_code == 200
    assert nobody.json() == {"links": []}
    assert deleted.status_code == 204
    assert [link["link_id"] for link in after] == [first.link_id]
    assert gone.status_code == 404
    assert gone.json()["code"] == "link_not_found"


async def test_an_unknown_link_is_not_found(host: Host) -> None:
    async with host.backend(**host.auth) as backend:
        response = await backend.get("/internal/v1/links/" + "A" * 22)
    assert response.status_code == 404
    assert response.json()["code"] == "link_not_found"


async def test_every_request_without_a_listed_token_or_from_a_browser_is_refused(
    host: Host, sandbox: Sandbox, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    linked = await connect(host.browser, sandbox)  # the browser now holds a session cookie
    owner = await _owner(redis)
    unlisted, _ = service_token()
    token = host.token
    refusals: list[dict[str, str]] = [
        {},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Bearer {unlisted}"},
        {"Authorization": f"Basic {token}"},
        {"Authorization": token},
        {"Authorization": f"Bearer {token}x"},
        {"Authorization": f"Bearer {token}", "Origin": ALLOWED_ORIGIN},
        {"Authorization": f"Bearer {token}", "Origin": "https://evil.example"},
        {"Authorization": f"Bearer {token}", "Sec-Fetch-Site": "same-origin"},
        {"Authorization": f"Bearer {token}", "Sec-Fetch-Site": "none"},
    ]
    paths = (f"/internal/v1/links/{linked.link_id}", f"/internal/v1/owners/{owner}/links")
    with caplog.at_level(logging.DEBUG):
        for headers in refusals:
            async with host.backend(**headers) as caller:
                for path in paths:
                    response = await caller.get(path)
                    assert response.status_code == 401, (headers, path, response.text)
                    assert response.json()["code"] == "unauthenticated"
                    assert response.headers["www-authenticate"].startswith("Bearer")
                    assert linked.login_id not in response.text
                    assert not any(h.startswith("access-control-") for h in response.headers)
        # Cookie-only: the browser that made the link, its session cookie and nothing else.
        for path in paths:
            response = await host.browser.get(path)
            assert response.status_code == 401, response.text
            assert linked.login_id not in response.text
    refused = [r for r in caplog.records if r.getMessage() == "internal.refused"]
    assert len(refused) == len(refusals) * len(paths) + len(paths)
    for record in _bff_records(caplog):
        assert token not in f"{record.getMessage()} {vars(record)!r}"


async def test_no_cors_for_the_internal_api_even_from_an_allowed_origin(host: Host) -> None:
    async with host.backend() as browser:
        # The same preflight is allowed on /v1: the origin is one of the BFF's own.
        allowed = await browser.options(
            "/v1/links",
            headers={"Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "GET"},
        )
        assert allowed.status_code == 204
        assert allowed.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
        for path in ("/internal/v1/links/" + "A" * 22, "/internal/v1/owners/someone/links"):
            preflight = await browser.options(
                path,
                headers={
                    "Origin": ALLOWED_ORIGIN,
                    "Access-Control-Request-Method": "GET",
                    "Access-Control-Request-Headers": "authorization",
                },
            )
            assert preflight.status_code == 403, preflight.text
            assert not any(h.startswith("access-control-") for h in preflight.headers)
            simple = await browser.get(path, headers={"Origin": ALLOWED_ORIGIN})
            assert simple.status_code == 401
            assert not any(h.startswith("access-control-") for h in simple.headers)


async def test_without_configured_tokens_nothing_gets_in(
    redis_url: str, redis: Redis, sandbox: Sandbox
) -> None:
    token, _ = service_token()
    async with serve_in_process(create_app(bff_settings(redis_url, sandbox))) as browser:
        linked = await connect(browser, sandbox)
        for authorization in (f"Bearer {token}", "Bearer ", ""):
            response = await browser.get(
                f"/internal/v1/links/{linked.link_id}", headers={"Authorization": authorization}
            )
            assert response.status_code == 401, response.text
            assert linked.login_id not in response.text
