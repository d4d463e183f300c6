"""Fixtures for the Flinks client tests: a fake Flinks, recorded sleeps, a client over both."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from app.flinks import FlinksClient, RetryPolicy
from tests.flinks.fakes import FakeFlinks, RecordedSleeps, make_client


@pytest.fixture
def fake() -> FakeFlinks:
    return FakeFlinks()


@pytest.fixture
def sleeps() -> RecordedSleeps:
    return RecordedSleeps()


@pytest.fixture
def retry(sleeps: RecordedSleeps) -> RetryPolicy:
    return RetryPolicy(sleep=sleeps, random=lambda: 0.5)


@pytest.fixture
async def http(fake: FakeFlinks) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake.handle)) as client:
        yield client


@pytest.fixture
def flinks(http: httpx.AsyncClient, retry: RetryPolicy) -> FlinksClient:
    return make_client(http, retry)
