from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from app.sandbox.config import SandboxSettings
from tests.sandbox.flinks import SandboxApi
from tests.sandbox.server import SandboxHandle, running_sandbox


def clean_settings(**overrides: object) -> SandboxSettings:
    """Settings from code only: a developer's SANDBOX_* variables must not leak in."""
    with pytest.MonkeyPatch.context() as patch:
        for name in os.environ:
            if name.startswith("SANDBOX_"):
                patch.delenv(name)
        return SandboxSettings(**overrides)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def _default_sandbox() -> Iterator[SandboxHandle]:
    with running_sandbox(clean_settings()) as sandbox:
        yield sandbox


@pytest.fixture(scope="session")
def http() -> Iterator[httpx.Client]:
    # One client for the session: building an SSL context per client costs ~50 ms.
    with httpx.Client(timeout=10) as client:
        yield client


@pytest.fixture
def sandbox(_default_sandbox: SandboxHandle, http: httpx.Client) -> SandboxHandle:
    """The shared default sandbox, reset to a fresh state for each test."""
    response = http.post(f"{_default_sandbox.base_url}/__sandbox/reset")
    assert response.status_code == 204
    return _default_sandbox


@pytest.fixture
def flinks(sandbox: SandboxHandle, http: httpx.Client) -> SandboxApi:
    return SandboxApi(sandbox, http)
