"""Connect's follow-up: a cached /Authorize on the LoginId a Connect sign-in produced."""

from __future__ import annotations

from typing import Any

from tests.sandbox.flinks import ANSWERS, PASSWORD, SandboxApi


def _connect(flinks: SandboxApi, username: str = "Greatday") -> dict[str, Any]:
    """A Connect sign-in, as the Connect page does it (the token consumed there)."""
    response = flinks.control(
        "POST",
        "connect/complete",
        {
            "authorize_token": flinks.token(),
            "username": username,
            "password": PASSWORD,
            "answers": {prompt: [answer] for prompt, answer in ANSWERS.items()},
        },
    )
    assert response.status_code == 200, response.text
    done: dict[str, Any] = response.json()
    return done


def _cached(flinks: SandboxApi, login_id: str) -> Any:
    return flinks.authorize({"LoginId": login_id, "MostRecentCached": True})


def _switch(flinks: SandboxApi, **values: Any) -> None:
    assert flinks.control("PATCH", "switches", values).status_code == 200


def test_a_connect_login_answers_a_cached_authorize_pending_then_200(flinks: SandboxApi) -> None:
    at_once = _connect(flinks)["login_id"]
    first = _cached(flinks, at_once)
    _switch(flinks, connect_cached_pending_seconds=30)
    login_id = _connect(flinks, "greatday_nomfa")["login_id"]

    pending = _cached(flinks, login_id)
    request_id = pending.json()["RequestId"]
    polled = flinks.get(f"AuthorizeAsync/{request_id}")
    flinks.control("POST", "clock", {"advance_seconds": 31})
    done = flinks.get(f"AuthorizeAsync/{request_id}")
    later = _cached(flinks, login_id)

    # By default (no window) at once, and no second round of questions.
    assert first.status_code == 200
    assert first.json()["Login"]["Id"] == at_once
    assert "SecurityChallenges" not in first.json()
    # Within the window: 202 OPERATION_PENDING, followed on AuthorizeAsync, then 200.
    assert pending.status_code == 202
    assert pending.json()["FlinksCode"] == "OPERATION_PENDING"
    assert pending.json()["Message"] == "Your operation is still processing."
    assert polled.status_code == 202
    assert done.status_code == 200
    assert done.json()["Login"]["Id"] == login_id
    assert done.json()["RequestId"] == request_id
    assert flinks.data("GetAccountsSummary", {"RequestId": request_id}).status_code == 200
    assert later.status_code == 200
    assert later.json()["RequestId"] != request_id


def test_the_pending_window_follows_a_connect_sign_in_only(flinks: SandboxApi) -> None:
    _switch(flinks, connect_cached_pending_seconds=30)
    issued = flinks.issue_login("greatday_nomfa")  # no Connect sign-in
    api = flinks.connect("greatday_nomfa", Language="fr")["Login"]["Id"]

    assert _cached(flinks, issued).status_code == 200
    assert _cached(flinks, api).status_code == 200


def test_a_dispatched_connect_sign_in_is_pending_until_its_work_is_done(
    flinks: SandboxApi,
) -> None:
    _switch(flinks, dispatched_seconds=60)
    login_id = _connect(flinks, "test_dispatched")["login_id"]

    pending = _cached(flinks, login_id)
    flinks.control("POST", "clock", {"advance_seconds": 61})
    done = _cached(flinks, login_id)

    assert pending.json()["FlinksCode"] == "OPERATION_PENDING"
    assert done.status_code == 200
