"""Latency and fault injection, set at start-up or flipped at run time."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.sandbox.conftest import clean_settings
from tests.sandbox.flinks import SandboxApi
from tests.sandbox.server import running_sandbox
from tests.waiting import wait_until


def _faults(flinks: SandboxApi, method: str = "PUT", **config: object) -> httpx.Response:
    return flinks.control(method, "faults", config)


def test_injected_errors_have_the_configured_status_and_flinks_shape(flinks: SandboxApi) -> None:
    assert (
        _faults(flinks, error_rate=1.0, error_status=503, error_code="RETRY_LATER").status_code
        == 200
    )

    response = flinks.post("GenerateAuthorizeToken", **{"flinks-auth-key": flinks.secret})

    assert response.status_code == 503
    assert response.json() == {
        "HttpStatusCode": 503,
        "Message": "Injected fault",
        "FlinksCode": "RETRY_LATER",
    }
    [call] = flinks.calls("GenerateAuthorizeToken")
    assert call["fault"] == "error"
    assert call["status"] == 503


def test_remaining_limits_the_number_of_faults(flinks: SandboxApi) -> None:
    _faults(flinks, error_rate=1.0, remaining=2)

    statuses = [
        flinks.post("GenerateAuthorizeToken", **{"flinks-auth-key": flinks.secret}).status_code
        for _ in range(3)
    ]

    assert statuses == [500, 500, 200]
    assert flinks.control("GET", "faults").json()["remaining"] == 0


def test_faults_can_target_endpoints_and_spare_the_control_api(flinks: SandboxApi) -> None:
    _faults(flinks, error_rate=1.0, endpoints=["authorize"])

    token = flinks.token()  # GenerateAuthorizeToken is spared
    response = flinks.live("greatday_nomfa", token=token)

    assert response.status_code == 500
    assert flinks.control("GET", "health").status_code == 200
    assert flinks.http.get(f"{flinks.sandbox.base_url}/v2/").status_code == 200


def test_latency_is_added(flinks: SandboxApi) -> None:
    _faults(flinks, latency_ms=150)

    started = time.perf_counter()
    flinks.token()

    assert time.perf_counter() - started >= 0.15


def test_dropped_connections(flinks: SandboxApi) -> None:
    _faults(flinks, drop_rate=1.0, remaining=1)

    with pytest.raises(httpx.RemoteProtocolError):
        flinks.post("GenerateAuthorizeToken", **{"flinks-auth-key": flinks.secret})
    assert flinks.token()
    assert flinks.calls("GenerateAuthorizeToken")[0]["fault"] == "drop"


def test_timeouts_hold_the_response_after_doing_the_work(flinks: SandboxApi) -> None:
    _faults(flinks, timeout_rate=1.0, timeout_seconds=0.6, endpoints=["GenerateAuthorizeToken"])

    with pytest.raises(httpx.ReadTimeout):
        flinks.http.post(
            f"{flinks.api}/GenerateAuthorizeToken",
            headers={"flinks-auth-key": flinks.secret},
            timeout=0.2,
        )
    wait_until(
        lambda: flinks.control("GET", "state").json()["tokens"] == 1,
        what="the token to be minted although its response is held",
    )
    calls = wait_until(flinks.calls, what="the held response to end")
    assert calls[0]["fault"] == "timeout"


def test_faults_reset_to_the_configured_ones(flinks: SandboxApi) -> None:
    _faults(flinks, error_rate=0.5)
    patched = _faults(flinks, "PATCH", latency_ms=3).json()
    reset = flinks.control("DELETE", "faults").json()

    assert patched["error_rate"] == 0.5
    assert patched["latency_ms"] == 3
    assert reset["error_rate"] == 0
    assert reset["latency_ms"] == 0


@pytest.mark.parametrize(
    "config",
    [
        {"error_rate": 1.5},
        {"error_rate": 0.6, "drop_rate": 0.6},
        {"error_status": 200},
        {"latency_ms": -1},
        {"nonsense": True},
    ],
)
def test_invalid_fault_configs_are_refused(flinks: SandboxApi, config: dict[str, object]) -> None:
    response = flinks.control("PUT", "faults", config)

    assert response.status_code == 422
    assert flinks.control("GET", "faults").json()["error_rate"] == 0


def test_a_seeded_error_rate_is_reproducible(http: httpx.Client) -> None:
    def run() -> list[int]:
        settings = clean_settings(error_rate=0.5, fault_seed=7)
        with running_sandbox(settings) as sandbox:
            client = SandboxApi(sandbox, http)
            return [
                client.post(
                    "GenerateAuthorizeToken", **{"flinks-auth-key": client.secret}
                ).status_code
                for _ in range(20)
            ]

    first, second = run(), run()

    assert first == second
    assert 500 in first
    assert 200 in first
