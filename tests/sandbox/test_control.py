"""The /__sandbox control API: call record, reset, clock, state, logins."""

from __future__ import annotations

import httpx

from tests.sandbox.conftest import clean_settings
from tests.sandbox.flinks import SandboxApi
from tests.sandbox.server import running_sandbox


def test_the_call_record_lists_calls_and_can_be_cleared(flinks: SandboxApi) -> None:
    login_id = flinks.connect()["Login"]["Id"]
    flinks.authorize({"LoginId": login_id, "MostRecentCached": True})

    calls = flinks.calls()
    cached = flinks.calls("authorize")[-1]
    gets = flinks.http.get(
        f"{flinks.sandbox.base_url}/__sandbox/calls", params={"method": "get"}
    ).json()

    assert [c["endpoint"] for c in calls] == [
        "GenerateAuthorizeToken",
        "Authorize",
        "GenerateAuthorizeToken",
        "Authorize",
    ]
    assert [c["seq"] for c in calls] == [1, 2, 3, 4]
    assert cached["login_id"] == login_id
    assert cached["most_recent_cached"] is True
    assert cached["response_request_id"]
    assert gets == []
    assert flinks.control("DELETE", "calls").status_code == 204
    assert flinks.calls() == []


def test_reset_forgets_everything(flinks: SandboxApi) -> None:
    token = flinks.token()
    login_id = flinks.connect()["Login"]["Id"]
    flinks.control("PUT", "faults", {"latency_ms": 5})

    assert flinks.control("POST", "reset").status_code == 204

    state = flinks.control("GET", "state").json()
    assert state == {
        "tokens": 0,
        "sessions": 0,
        "cards": 0,
        "bank_sessions": 0,
        "connect_sessions": 0,
        "calls": 0,
        "calls_total": 0,
    }
    assert flinks.control("GET", "faults").json()["latency_ms"] == 0
    assert flinks.live("greatday_nomfa", token=token).status_code == 401
    assert flinks.authorize({"LoginId": login_id, "MostRecentCached": True}).status_code == 401


def test_logins_can_be_issued_and_listed(flinks: SandboxApi) -> None:
    issued = flinks.control("POST", "logins", {"username": "test_disabled_account"})
    unknown = flinks.control("POST", "logins", {"username": "nobody"})
    listed = flinks.control("GET", "logins").json()

    assert issued.status_code == 201
    assert unknown.status_code == 422
    assert listed == [
        {
            "login_id": issued.json()["login_id"],
            "customer_id": flinks.sandbox.customer_id,
            "username": "test_disabled_account",
            "language": "en",
            "saved": True,
            "is_scheduled_refresh": False,
        }
    ]


def test_the_clock_only_moves_forward(flinks: SandboxApi) -> None:
    moved = flinks.control("POST", "clock", {"advance_seconds": 90}).json()
    backwards = flinks.control("POST", "clock", {"advance_seconds": -5})

    assert moved["offset_seconds"] == 90
    assert backwards.status_code == 422
    assert flinks.control("GET", "clock").json()["offset_seconds"] == 90


def test_the_control_api_can_be_turned_off(http: httpx.Client) -> None:
    with running_sandbox(clean_settings(control_api=False)) as sandbox:
        assert http.get(f"{sandbox.base_url}/__sandbox/calls").status_code == 404


def test_the_call_record_is_bounded(http: httpx.Client) -> None:
    with running_sandbox(clean_settings(call_record_limit=3)) as sandbox:
        client = SandboxApi(sandbox, http)
        for _ in range(5):
            client.token()

        assert [c["seq"] for c in client.calls()] == [3, 4, 5]
        assert client.control("GET", "state").json()["calls_total"] == 5


def test_two_sandboxes_in_one_process_do_not_share_state(http: httpx.Client) -> None:
    with running_sandbox(clean_settings()) as one, running_sandbox(clean_settings()) as two:
        a, b = SandboxApi(one, http), SandboxApi(two, http)
        token = a.token()

        assert b.live("greatday_nomfa", token=token).status_code == 401
        assert a.connect()["Login"]["Id"] != b.connect()["Login"]["Id"]
        assert [c["endpoint"] for c in a.calls()] == [
            "GenerateAuthorizeToken",
            "GenerateAuthorizeToken",
            "Authorize",
        ]
        assert [c["status"] for c in b.calls()] == [401, 200, 200]
