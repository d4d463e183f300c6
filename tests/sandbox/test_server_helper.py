"""tests.sandbox.server.running_sandbox: fast start, real HTTP, clean stop."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.sandbox.conftest import clean_settings
from tests.sandbox.server import running_sandbox


def test_starts_fast_serves_and_stops(http: httpx.Client) -> None:
    started = time.perf_counter()
    with running_sandbox(clean_settings()) as sandbox:
        startup = time.perf_counter() - started
        health = http.get(f"{sandbox.base_url}/__sandbox/health")
        assert sandbox.base_url.startswith("http://127.0.0.1:")
        assert sandbox.api_url.endswith("/v3/43387ca6-0391-4c82-857d-70d95f087ecb/BankingServices")
        assert sandbox.app_state.settings is sandbox.settings

    assert startup < 5  # generous: it catches a hang, not a slow machine
    assert health.json() == {"status": "ok"}
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{sandbox.base_url}/__sandbox/health", timeout=1)


def test_the_state_is_readable_between_requests(http: httpx.Client) -> None:
    with running_sandbox(clean_settings()) as sandbox:
        http.post(
            f"{sandbox.api_url}/GenerateAuthorizeToken",
            headers={"flinks-auth-key": sandbox.settings.secret_key},
        )

        assert len(sandbox.app_state.tokens) == 1
