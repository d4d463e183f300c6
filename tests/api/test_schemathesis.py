"""Schemathesis against the app's own OpenAPI document: positive and negative data, every route,
over a real socket, with the sandbox and Redis behind. 0 server errors, responses as documented.

SCHEMATHESIS_MAX_EXAMPLES (default 40) is the examples per operation and mode; `make fuzz` raises
it and sets SCHEMATHESIS_MIN_CASES, the number of cases the run must reach to pass.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from schemathesis import GenerationMode
from schemathesis.config._checks import (
    NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES,
    NegativeDataRejectionConfig,
)
from schemathesis.specs.openapi.checks import positive_data_acceptance

from app.main import create_app
from tests.conftest import make_settings
from tests.figures import record
from tests.integration.servers import bff_in_thread
from tests.sandbox.server import SandboxHandle

MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "40"))
MIN_CASES = int(os.environ.get("SCHEMATHESIS_MIN_CASES", "0"))
CASES: dict[str, int] = {}
FAILED: list[str] = []

schema = schemathesis.openapi.from_dict(
    create_app(make_settings(None, FLINKS_INSTITUTIONS="FlinksCapital")).openapi()
)
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=MAX_EXAMPLES
)
# A body over BFF_MAX_BODY_BYTES is refused before it is read: 413 rejects negative data too.
schema.config.checks.negative_data_rejection = NegativeDataRejectionConfig(
    expected_statuses=[*NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES, "413"]
)


@pytest.fixture(scope="module")
def bff(sandbox_handle: SandboxHandle, redis_url: str) -> Iterator[str]:
    settings = make_settings(
        redis_url,
        FLINKS_API_URL=sandbox_handle.base_url,
        FLINKS_CONNECT_URL=f"{sandbox_handle.base_url}/v2/",
        FLINKS_CUSTOMER_ID=sandbox_handle.customer_id,
        FLINKS_SECRET_KEY=sandbox_handle.settings.secret_key,
        FLINKS_INSTITUTIONS="FlinksCapital",
        BFF_RATE_LIMIT_IP=0,
        BFF_RATE_LIMIT_SESSION=0,
        # On, so Flinks' webhook answers as documented: 401 without a valid signature.
        FLINKS_WEBHOOKS=True,
        FLINKS_WEBHOOK_SECRET="schemathesis-webhook-secret",
    )
    with bff_in_thread(create_app(settings)) as url:
        yield url


@pytest.fixture(scope="module")
def flow_owner(bff: str) -> Iterator[requests.Session]:
    """A client with the cookie of a session that owns a flow, so flow routes are reached with a
    valid cookie."""
    with requests.Session() as session:
        started = session.post(f"{bff}/v1/connect/sessions", json={}, timeout=10)
        assert started.status_code == 201
        yield session


# A PKCE challenge, handoff code or verifier is checked by the handoff, not by the schema: any
# such value the schema allows may still be refused (400 handoff_invalid, one code for every
# reason, so that the schema does not tell an attacker which part was wrong).
CHECKED_BY_THE_HANDOFF = {
    ("POST", "/v1/oauth/sessions"),
    ("POST", "/v1/connect/sessions"),
    ("POST", "/v1/flows/{flow_id}/handoff"),
}


@schema.parametrize()
def test_api_conforms_to_its_schema(case: Any, bff: str, flow_owner: requests.Session) -> None:
    label = f"{case.method} {case.path}"
    CASES[label] = CASES.get(label, 0) + 1
    excluded = (
        [positive_data_acceptance] if (case.method, case.path) in CHECKED_BY_THE_HANDOFF else []
    )
    try:
        response = case.call_and_validate(
            base_url=bff, session=flow_owner, timeout=30, excluded_checks=excluded
        )
    except Exception:
        FAILED.append(label)
        raise
    assert response.status_code < 500
    headers = {name.lower(): values for name, values in response.headers.items()}
    assert headers["x-content-type-options"] == ["nosniff"]
    assert "content-security-policy" in headers
    assert "x-request-id" in headers


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    cases = sum(CASES.values())
    record(
        "schemathesis",
        f"{cases} cases over {len(CASES)} method/path pairs, {len(FAILED)} failing",
    )
    assert cases >= MIN_CASES, f"{cases} schemathesis cases, fewer than the {MIN_CASES} asked"
