"""Slow banks: a live /Authorize that ends in 202 OPERATION_DISPATCHED, followed with the RequestId
on AuthorizeAsync until the background work ends (or the control API ends it)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.sandbox.flinks import SandboxApi
from tests.sandbox.mfa import right_responses
from tests.waiting import wait_until

HOLD = 0.5  # slow_bank_seconds in these tests


@pytest.fixture
def slow(flinks: SandboxApi) -> SandboxApi:
    """Slow banks take HOLD seconds, then their work runs until told (or the clock moves)."""
    response = flinks.control(
        "PATCH", "switches", {"slow_bank_seconds": HOLD, "dispatched_seconds": 600}
    )
    assert response.status_code == 200
    return flinks


def _poll(flinks: SandboxApi, request_id: str) -> httpx.Response:
    return flinks.get(f"AuthorizeAsync/{request_id}")


def _jobs(flinks: SandboxApi) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = flinks.control("GET", "dispatched").json()
    return jobs


def test_a_slow_bank_answers_dispatched_after_the_threshold(slow: SandboxApi) -> None:
    started = time.monotonic()
    response = slow.live("test_slow_bank", Save=True)
    took = time.monotonic() - started

    assert took >= HOLD  # a lower bound: the sandbox held the answer at least this long
    assert response.status_code == 202
    body = response.json()
    assert body["FlinksCode"] == "OPERATION_DISPATCHED"
    assert body["Message"] == (
        "Your operations had been dispatched to background process for long running jobs"
    )
    assert body["Links"] == [
        {
            "rel": "AuthorizeAsync",
            "href": "/AuthorizeAsync",
            "example": f"/AuthorizeAsync/{body['RequestId']}",
        }
    ]


def test_authorize_async_answers_202_until_the_work_is_done_then_200(slow: SandboxApi) -> None:
    request_id = slow.live("test_slow_bank", Save=True).json()["RequestId"]

    running = [_poll(slow, request_id) for _ in range(2)]
    finished = slow.control("POST", f"dispatched/{request_id}/finish")
    done = _poll(slow, request_id)
    again = _poll(slow, request_id)

    for pending in running:
        assert pending.status_code == 202
        assert pending.json()["FlinksCode"] == "OPERATION_PENDING"
        assert pending.json()["RequestId"] == request_id
    assert finished.status_code == 200
    assert done.status_code == 200
    assert list(done.json()) == [
        "HttpStatusCode",
        "Links",
        "InstitutionName",
        "Login",
        "InstitutionId",
        "Institution",
        "RequestId",
    ]
    assert done.json()["RequestId"] == request_id
    assert done.json()["Login"]["Username"] == "test_slow_bank"
    assert again.json() == done.json()
    summary = slow.data("GetAccountsSummary", {"RequestId": request_id})
    assert summary.status_code == 200
    cached = slow.authorize({"LoginId": done.json()["Login"]["Id"], "MostRecentCached": True})
    assert cached.status_code == 200


def test_the_work_ends_on_its_own_once_dispatched_seconds_have_passed(slow: SandboxApi) -> None:
    request_id = slow.live("test_dispatched", Save=True).json()["RequestId"]

    before = _poll(slow, request_id)
    slow.control("POST", "clock", {"advance_seconds": 601})
    after = _poll(slow, request_id)

    assert before.status_code == 202
    assert after.status_code == 200
    assert after.json()["Login"]["Username"] == "test_dispatched"


def test_a_slow_bank_with_mfa_asks_its_question_when_ready(slow: SandboxApi) -> None:
    token = slow.token()
    dispatched = slow.live("test_slow_bank_mfa", token=token, Save=True)
    request_id = dispatched.json()["RequestId"]
    early = slow.authorize(
        {
            "RequestId": request_id,
            "SecurityResponses": {"What city were you born in?": ["Montreal"]},
        }
    )
    slow.control("POST", f"dispatched/{request_id}/finish")

    challenge = _poll(slow, request_id)
    body = challenge.json()
    done = slow.authorize(
        {
            "RequestId": request_id,
            "SecurityResponses": right_responses(body["SecurityChallenges"][0]),
        }
    )

    assert dispatched.status_code == 202
    assert early.status_code == 202  # answers before the question: still processing
    assert challenge.status_code == 203
    assert body["SecurityChallenges"] == [
        {"Type": "QuestionAndAnswer", "Prompt": "What city were you born in?"}
    ]
    assert body["RequestId"] == request_id
    assert done.status_code == 200
    assert done.json()["RequestId"] == request_id


@pytest.mark.parametrize(("code", "status"), [("RETRY_LATER", 401), ("AGGREGATION_ERROR", 500)])
def test_the_control_api_can_fail_the_work(slow: SandboxApi, code: str, status: int) -> None:
    request_id = slow.live("test_slow_bank", Save=True).json()["RequestId"]

    failed = slow.control("POST", f"dispatched/{request_id}/fail", {"flinks_code": code})
    first, second = _poll(slow, request_id), _poll(slow, request_id)

    assert failed.status_code == 200
    assert failed.json()["failure"] == code
    for response in (first, second):  # the same answer for every poll
        assert response.status_code == status
        assert response.json()["FlinksCode"] == code
        assert response.json()["RequestId"] == request_id


def test_a_cached_authorize_during_the_work_is_pending_on_the_same_request(
    slow: SandboxApi,
) -> None:
    login_id = slow.issue_login("test_slow_bank")
    live = slow.authorize({"LoginId": login_id, "MostRecentCached": False, "Save": True})
    request_id = live.json()["RequestId"]

    pending = slow.authorize({"LoginId": login_id, "MostRecentCached": True})
    in_use = slow.http.delete(
        f"{slow.api}/DeleteCard/{login_id}", headers={"x-api-key": slow.api_key}
    )
    data = slow.data("GetAccountsSummary", {"RequestId": request_id})
    slow.control("POST", f"dispatched/{request_id}/finish")
    cached = slow.authorize({"LoginId": login_id, "MostRecentCached": True})

    assert live.json()["FlinksCode"] == "OPERATION_DISPATCHED"
    assert pending.status_code == 202
    assert pending.json()["FlinksCode"] == "OPERATION_PENDING"
    assert pending.json()["RequestId"] == request_id
    assert in_use.json()["FlinksCode"] == "CARD_IN_USE"
    assert data.status_code == 202
    assert data.json()["Links"][0]["rel"] == "GetAccountsDetailAsync"
    assert cached.status_code == 200
    assert cached.json()["Login"]["Id"] == login_id


def test_a_caller_that_gives_up_does_not_stop_the_work(slow: SandboxApi) -> None:
    login_id = slow.issue_login("test_slow_bank")
    slow.control("PATCH", "switches", {"slow_bank_seconds": 30})

    with pytest.raises(httpx.ReadTimeout):
        slow.http.post(
            f"{slow.api}/Authorize",
            json={"LoginId": login_id, "MostRecentCached": False, "Save": True},
            headers={"flinks-auth-key": slow.token()},
            timeout=0.3,
        )
    [job] = _jobs(slow)
    # The sandbox notices the hang-up and records the call (not 30 s later, in another test).
    wait_until(lambda: slow.calls("Authorize"), what="the abandoned /Authorize to be recorded")
    pending = slow.authorize({"LoginId": login_id, "MostRecentCached": True})
    slow.control("POST", f"dispatched/{job['request_id']}/finish")
    done = slow.authorize({"LoginId": login_id, "MostRecentCached": True})

    assert (job["username"], job["login_id"], job["status"]) == (
        "test_slow_bank",
        login_id,
        "dispatched",
    )
    assert pending.json()["FlinksCode"] == "OPERATION_PENDING"
    assert done.status_code == 200


def test_the_dispatched_list(slow: SandboxApi) -> None:
    request_id = slow.live("test_dispatched", Save=True).json()["RequestId"]

    [job] = _jobs(slow)

    assert job["request_id"] == request_id
    assert job["username"] == "test_dispatched"
    assert job["status"] == "dispatched"
    assert 0 < job["ready_in_seconds"] <= 600
    assert job["failure"] is None


def test_control_refusals(slow: SandboxApi) -> None:
    done = slow.connect()["RequestId"]
    request_id = slow.live("test_dispatched").json()["RequestId"]

    assert slow.control("POST", "dispatched/nope/finish").status_code == 404
    assert slow.control("POST", f"dispatched/{request_id}/explode").status_code == 404
    assert slow.control("POST", f"dispatched/{done}/finish").status_code == 409
    bad_code = slow.control("POST", f"dispatched/{request_id}/fail", {"flinks_code": "OK"})
    assert bad_code.status_code == 422


def test_authorize_async_refusals(slow: SandboxApi) -> None:
    request_id = slow.live("test_dispatched").json()["RequestId"]

    unknown = _poll(slow, "5e115eac-1209-4f19-641c-08d6d484e2fe")
    no_key = slow.http.get(f"{slow.api}/AuthorizeAsync/{request_id}")
    post = slow.post(f"AuthorizeAsync/{request_id}", {}, **{"x-api-key": slow.api_key})

    assert unknown.status_code == 400
    assert unknown.json()["FlinksCode"] == "SESSION_NONEXISTENT"
    assert no_key.status_code == 401
    assert post.status_code == 405
