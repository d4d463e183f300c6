"""The callback under hostile input and under a race, over real sockets.

Sync tests: the BFF runs in a uvicorn thread (fuzz) or as two `flinks-bff serve` processes
sharing one Redis (race), so each request crosses a real socket.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
from collections.abc import Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from app.main import create_app
from tests.figures import record
from tests.integration.conftest import ANSWERS, PASSWORD
from tests.integration.oauth_steps import RETURN_URL
from tests.integration.servers import bff_in_thread, bff_processes
from tests.sandbox.server import SandboxHandle

RACE_ROUNDS = int(os.environ.get("RACE_ROUNDS", "20"))
RACE_CONCURRENCY = 50


def _bff_env(sandbox: SandboxHandle, redis_url: str) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "FLINKS_API_URL": sandbox.base_url,
        "FLINKS_CONNECT_URL": f"{sandbox.base_url}/v2/",
        "FLINKS_CUSTOMER_ID": sandbox.customer_id,
        "FLINKS_SECRET_KEY": sandbox.settings.secret_key,
        "FLINKS_DEMO": "true",
        # Every round starts a flow from 127.0.0.1: the limits are tested elsewhere.
        "BFF_RATE_LIMIT_IP": "0",
        "BFF_RATE_LIMIT_SESSION": "0",
        # Shared by every replica: one may seal what another opens.
        "BFF_ENCRYPTION_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
    }


@pytest.fixture
def sandbox_sync(sandbox_handle: SandboxHandle) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox_handle.base_url, timeout=10) as http:
        assert http.post("/__sandbox/reset").status_code == 204
        yield http


def _authorize_calls(http: httpx.Client) -> int:
    return len(http.get("/__sandbox/calls", params={"endpoint": "Authorize"}).json())


def _callback_path(http: httpx.Client, bank_url: str, username: str = "greatday_nomfa") -> str:
    response = http.post(
        "/__sandbox/oauth/complete",
        json={"session": bank_url, "username": username, "password": PASSWORD, "answers": ANSWERS},
    )
    assert response.status_code == 200, response.text
    parts = urlsplit(response.json()["location"])
    return f"{parts.path}?{parts.query}"


@pytest.fixture
def bff_url(
    sandbox_handle: SandboxHandle, redis_url: str, sandbox_sync: httpx.Client
) -> Iterator[str]:
    env = _bff_env(sandbox_handle, redis_url)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        from app.settings import load_settings

        app = create_app(load_settings(_env_file=None))
    with bff_in_thread(app) as url:
        yield url


_PARAM_NAMES = st.sampled_from(
    ["state", "loginId", "error", "error_description", "return_url", "redirect_uri", "x"]
)
_QUERIES = st.lists(st.tuples(_PARAM_NAMES, st.text(max_size=300)), max_size=6)


def _visible(response: httpx.Response) -> str:
    """What a response shows of its content: the body and the header values (header names are
    the same whatever the query says)."""
    return "\n".join([response.text, *response.headers.values()])


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(query=_QUERIES, with_cookie=st.booleans())
# Every response says `Vary: Origin`: a query value "Origin" is not reflected by that.
@example(query=[("error_description", "Origin")], with_cookie=False)
@example(query=[("error_description", "<script>alert(1)</script>")], with_cookie=True)
def test_fuzzed_callbacks_never_fail_reflect_or_call_flinks(
    bff_url: str, sandbox_sync: httpx.Client, query: list[tuple[str, str]], with_cookie: bool
) -> None:
    with httpx.Client(base_url=bff_url, timeout=10) as browser:
        if with_cookie:
            started = browser.get(
                "/v1/oauth/start", params={"institution": "FlinksCapital", "return_url": RETURN_URL}
            )
            assert started.status_code == 303
        # The same refusal for a query that says nothing: what every such response shows.
        baseline = _visible(browser.get("/v1/oauth/callback"))
        response = browser.get("/v1/oauth/callback?" + urlencode(query))
    assert response.status_code < 500
    assert response.status_code == 403
    assert response.json()["code"] == "state_invalid"
    visible = _visible(response)
    for _, value in query:
        if len(value.strip()) >= 6 and value in visible:
            assert value in baseline, f"the query value {value!r} is reflected"
    assert _authorize_calls(sandbox_sync) == 0


async def _race_round(
    browser: httpx.AsyncClient, sandbox: httpx.AsyncClient, urls: list[str]
) -> tuple[int, int]:
    started = await browser.get(
        f"{urls[0]}/v1/oauth/start",
        params={"institution": "FlinksCapital", "return_url": RETURN_URL},
    )
    assert started.status_code == 303, started.text
    done = await sandbox.post(
        "/__sandbox/oauth/complete",
        json={
            "session": started.headers["location"],
            "username": "greatday_nomfa",
            "password": PASSWORD,
        },
    )
    parts = urlsplit(done.json()["location"])
    path = f"{parts.path}?{parts.query}"
    responses = await asyncio.gather(
        *(browser.get(urls[i % len(urls)] + path) for i in range(RACE_CONCURRENCY))
    )
    successes = 0
    for response in responses:
        assert response.status_code in (303, 403), (response.status_code, response.text)
        if response.status_code == 303:
            query = parse_qs(urlsplit(response.headers["location"]).query)
            successes += query["status"] == ["connected"]
    refused = sum(r.status_code == 403 for r in responses)
    return successes, refused


@pytest.mark.fuzz  # make fuzz runs it with RACE_ROUNDS=200
def test_concurrent_callbacks_over_two_processes_succeed_exactly_once(
    sandbox_handle: SandboxHandle, redis_url: str, sandbox_sync: httpx.Client
) -> None:
    async def run(urls: list[str]) -> list[tuple[int, int, int]]:
        results = []
        # A fresh connection for every request: `flinks-bff serve` closes one idle for 5 s
        # (uvicorn's default), and on a loaded machine this process may read a response late
        # enough that a pooled connection it thinks fresh is being closed as the request
        # lands (ECONNRESET). No connection is reused, so none is ever stale.
        limits = httpx.Limits(max_connections=RACE_CONCURRENCY, max_keepalive_connections=0)
        async with (
            httpx.AsyncClient(timeout=30, limits=limits) as browser,
            httpx.AsyncClient(base_url=sandbox_handle.base_url, timeout=30) as sandbox,
        ):
            for _ in range(RACE_ROUNDS):
                before = _authorize_calls(sandbox_sync)
                # One owner for every round (its session id rotates as each round connects):
                # the same sandbox user's loginId comes back each time, and a loginId is its
                # first owner's (another owner's round would be 409 login_owned_elsewhere).
                successes, refused = await _race_round(browser, sandbox, urls)
                results.append((successes, refused, _authorize_calls(sandbox_sync) - before))
        return results

    with bff_processes(_bff_env(sandbox_handle, redis_url), count=2) as urls:
        results = asyncio.run(run(urls))
    duplicates = sum(max(0, s - 1) for s, _, _ in results)
    record(
        "race",
        f"{RACE_ROUNDS} rounds x {RACE_CONCURRENCY} concurrent callbacks over 2 processes, "
        f"duplicate successes = {duplicates}, /Authorize calls = "
        f"{sum(calls for _, _, calls in results)}",
    )
    assert all(s == 1 for s, _, _ in results), results
    assert all(r == RACE_CONCURRENCY - 1 for _, r, _ in results), results
    assert all(calls == 1 for _, _, calls in results), results
