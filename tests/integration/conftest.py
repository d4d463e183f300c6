"""The BFF in process, talking over real HTTP to the sandbox and to a real Redis server."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from redis.asyncio import Redis
from starlette.types import ASGIApp

from app.sandbox.config import SandboxSettings
from app.settings import Settings
from tests.conftest import asgi_client, make_settings
from tests.sandbox.server import SandboxHandle, running_sandbox

PASSWORD = "Everyday"
ANSWERS = {
    "What city were you born in?": ["Montreal"],
    "What is the best country on earth?": ["Canada"],
    "What shape do people like most?": ["Triangle"],
}


@pytest.fixture(scope="session")
def sandbox_handle() -> Iterator[SandboxHandle]:
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("SANDBOX_")}
    try:
        with running_sandbox(SandboxSettings()) as handle:
            yield handle
    finally:
        os.environ.update(saved)


@dataclass
class Sandbox:
    handle: SandboxHandle
    http: httpx.AsyncClient

    @property
    def base_url(self) -> str:
        return self.handle.base_url

    async def calls(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        params = {"endpoint": endpoint} if endpoint else {}
        response = await self.http.get("/__sandbox/calls", params=params)
        assert response.status_code == 200
        records: list[dict[str, Any]] = response.json()
        return records

    async def authorize_calls(self) -> list[dict[str, Any]]:
        return await self.calls("Authorize")

    async def switch(self, **values: object) -> None:
        """Sets sandbox switches (app/sandbox/README.md); the fixture resets them per test."""
        response = await self.http.patch("/__sandbox/switches", json=values)
        assert response.status_code == 200, response.text

    async def dispatched(self) -> list[dict[str, Any]]:
        """Background work the sandbox is running (RequestIds that answered 202)."""
        response = await self.http.get("/__sandbox/dispatched")
        assert response.status_code == 200
        jobs: list[dict[str, Any]] = response.json()
        return jobs

    async def finish(self, request_id: str) -> None:
        response = await self.http.post(f"/__sandbox/dispatched/{request_id}/finish")
        assert response.status_code == 200, response.text

    async def login_via_connect(
        self, iframe_url: str, username: str, answers: dict[str, list[str]] | None = None
    ) -> str:
        """What a person does in the Connect iframe, in one call: the loginId of REDIRECT."""
        token = parse_qs(urlsplit(iframe_url).query)["authorizeToken"][0]
        response = await self.http.post(
            "/__sandbox/connect/complete",
            json={
                "authorize_token": token,
                "username": username,
                "password": PASSWORD,
                "answers": answers or ANSWERS,
            },
        )
        assert response.status_code == 200, response.text
        login_id: str = response.json()["login_id"]
        return login_id

    async def issue_login(self, username: str) -> str:
        """A saved loginId for any test user (error users included)."""
        response = await self.http.post("/__sandbox/logins", json={"username": username})
        assert response.status_code == 201, response.text
        login_id: str = response.json()["login_id"]
        return login_id


@pytest.fixture
async def sandbox(sandbox_handle: SandboxHandle) -> AsyncIterator[Sandbox]:
    async with httpx.AsyncClient(base_url=sandbox_handle.base_url, timeout=10) as http:
        assert (await http.post("/__sandbox/reset")).status_code == 204
        yield Sandbox(sandbox_handle, http)


def bff_settings(redis_url: str, sandbox: Sandbox, **overrides: object) -> Settings:
    """Rate limits are off unless a test turns them on: flows tests send many requests."""
    overrides = {"BFF_RATE_LIMIT_IP": 0, "BFF_RATE_LIMIT_SESSION": 0, **overrides}
    return make_settings(
        redis_url,
        FLINKS_API_URL=sandbox.base_url,
        FLINKS_CONNECT_URL=f"{sandbox.base_url}/v2/",
        FLINKS_CUSTOMER_ID=sandbox.handle.customer_id,
        FLINKS_SECRET_KEY=sandbox.handle.settings.secret_key,
        FLINKS_API_KEY=sandbox.handle.settings.api_key,
        FLINKS_DEMO=True,
        **overrides,
    )


def bff_process_env(redis_url: str, sandbox: Sandbox, **values: str) -> dict[str, str]:
    """`bff_settings` as the environment of `flinks-bff serve` processes (tests/integration/
    servers.py), with one encryption key for all of them: one opens what another sealed, and
    their link ids agree."""
    return {
        "REDIS_URL": redis_url,
        "FLINKS_API_URL": sandbox.base_url,
        "FLINKS_CONNECT_URL": f"{sandbox.base_url}/v2/",
        "FLINKS_CUSTOMER_ID": sandbox.handle.customer_id,
        "FLINKS_SECRET_KEY": sandbox.handle.settings.secret_key,
        "FLINKS_API_KEY": sandbox.handle.settings.api_key,
        "FLINKS_DEMO": "true",
        "BFF_RATE_LIMIT_IP": "0",
        "BFF_RATE_LIMIT_SESSION": "0",
        "BFF_ENCRYPTION_KEY": base64.urlsafe_b64encode(bytes(range(32))).decode(),
        **values,
    }


@pytest.fixture
def settings(redis_url: str, redis: Redis, sandbox: Sandbox) -> Settings:
    return bff_settings(redis_url, sandbox)


@pytest.fixture
async def other_browser(running_app: ASGIApp) -> AsyncIterator[httpx.AsyncClient]:
    """A second cookie jar against the same running app."""
    async with asgi_client(running_app) as client:
        yield client
