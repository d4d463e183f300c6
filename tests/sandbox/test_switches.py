"""The switches: set by environment, CLI flag or /__sandbox/switches; each documented reading."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from app.sandbox import cli
from app.sandbox.config import SandboxSettings
from tests.sandbox.conftest import clean_settings
from tests.sandbox.flinks import SandboxApi
from tests.sandbox.mfa import right_responses, wrong_responses
from tests.sandbox.server import running_sandbox

DEFAULTS = {
    "wrong_answer": "fail",
    "mfa_token_reuse": "allow",
    "api_key_check": "required",
    "redirect_message": "both",
    "js_redirect": "honour",
    "oauth_token": "optional",
    "unknown_customer_code": "ACCESS_DENIED",
    "invalid_login_status": 401,
    "connect_cached_pending_seconds": 0.0,
    "slow_bank_seconds": 3.0,
    "dispatched_seconds": 5.0,
    "connect_error_users": "redirect",
    "mfa_rounds": 1,
    "detail_pending_polls": 1,
}
CHANGED = {
    "wrong_answer": "new_challenge",
    "mfa_token_reuse": "refuse",
    "api_key_check": "optional",
    "redirect_message": "url_only",
    "js_redirect": "ignore",
    "oauth_token": "required",
    "unknown_customer_code": "CUSTOMER_NOT_FOUND",
    "invalid_login_status": 400,
    "connect_cached_pending_seconds": 20.0,
    "slow_bank_seconds": 0.5,
    "dispatched_seconds": 60.0,
    "connect_error_users": "event",
    "mfa_rounds": 2,
    "detail_pending_polls": 0,
}


def _switch(flinks: SandboxApi, **values: Any) -> None:
    response = flinks.control("PATCH", "switches", values)
    assert response.status_code == 200, response.text


# -- setting them -----------------------------------------------------------------------------


def test_the_control_api_reads_merges_replaces_and_restores(flinks: SandboxApi) -> None:
    initial = flinks.control("GET", "switches").json()
    patched = flinks.control("PATCH", "switches", {"wrong_answer": "new_challenge"}).json()
    replaced = flinks.control("PUT", "switches", {"js_redirect": "ignore"}).json()
    restored = flinks.control("DELETE", "switches").json()

    assert initial == DEFAULTS
    assert patched == {**DEFAULTS, "wrong_answer": "new_challenge"}
    assert replaced == {**DEFAULTS, "js_redirect": "ignore"}
    assert restored == DEFAULTS


@pytest.mark.parametrize(
    "body",
    [
        {"wrong_answer": "retry"},
        {"invalid_login_status": 402},
        {"slow_bank_seconds": -1},
        {"no_such_switch": True},
    ],
)
def test_invalid_switches_are_refused(flinks: SandboxApi, body: dict[str, Any]) -> None:
    response = flinks.control("PATCH", "switches", body)

    assert response.status_code == 422
    assert flinks.control("GET", "switches").json() == DEFAULTS


def test_reset_restores_the_configured_switches(http: httpx.Client) -> None:
    with running_sandbox(clean_settings(wrong_answer="new_challenge")) as sandbox:
        client = SandboxApi(sandbox, http)
        client.control("PATCH", "switches", {"wrong_answer": "fail", "mfa_rounds": 3})
        client.control("POST", "reset")

        assert client.control("GET", "switches").json()["wrong_answer"] == "new_challenge"
        assert client.control("GET", "switches").json()["mfa_rounds"] == 1


def test_every_switch_has_an_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in CHANGED.items():
        monkeypatch.setenv(f"SANDBOX_{name.upper()}", str(value))

    assert SandboxSettings().model_dump(include=set(CHANGED)) == CHANGED


def test_every_switch_has_a_cli_flag() -> None:
    argv: list[str] = []
    for name, value in CHANGED.items():
        argv += ["--" + name.replace("_", "-"), str(value)]

    settings = cli.settings_from_args(cli.build_parser().parse_args(argv))

    assert settings.model_dump(include=set(CHANGED)) == CHANGED


def test_invalid_switch_settings_are_refused() -> None:
    with pytest.raises(ValidationError):
        SandboxSettings(invalid_login_status=403)
    with pytest.raises(ValidationError):
        SandboxSettings(redirect_message="query")


# -- wrong_answer -----------------------------------------------------------------------------


def test_wrong_answer_fail_ends_the_session(flinks: SandboxApi) -> None:
    challenge = flinks.live("test_mfa_multiple_choice")
    body = challenge.json()

    wrong = flinks.authorize(
        {
            "RequestId": body["RequestId"],
            "SecurityResponses": wrong_responses(body["SecurityChallenges"][0]),
        }
    )
    right = flinks.authorize(
        {
            "RequestId": body["RequestId"],
            "SecurityResponses": right_responses(body["SecurityChallenges"][0]),
        }
    )

    assert wrong.status_code == 401
    assert wrong.json()["FlinksCode"] == "INVALID_SECURITY_RESPONSE"
    assert "SecurityChallenges" not in wrong.json()
    assert right.json()["FlinksCode"] == "SESSION_NONEXISTENT"


def test_wrong_answer_new_challenge_asks_again_on_the_same_request_id(flinks: SandboxApi) -> None:
    _switch(flinks, wrong_answer="new_challenge")
    first = flinks.live("Greatday").json()
    request_id = first["RequestId"]

    wrong = flinks.authorize(
        {
            "RequestId": request_id,
            "SecurityResponses": wrong_responses(first["SecurityChallenges"][0]),
        }
    )
    again = wrong.json()
    done = flinks.authorize(
        {
            "RequestId": request_id,
            "SecurityResponses": right_responses(again["SecurityChallenges"][0]),
        }
    )

    assert wrong.status_code == 401
    assert again["FlinksCode"] == "INVALID_SECURITY_RESPONSE"
    assert again["HttpStatusCode"] == 401
    assert again["RequestId"] == request_id
    assert again["SecurityChallenges"] == [
        {"Type": "QuestionAndAnswer", "Prompt": "What is the best country on earth?"}
    ]
    assert done.status_code == 200
    assert done.json()["RequestId"] == request_id


def test_wrong_answer_new_challenge_gives_up_after_three(flinks: SandboxApi) -> None:
    _switch(flinks, wrong_answer="new_challenge")
    response = flinks.live("test_mfa_multiple_answers")
    request_id = response.json()["RequestId"]
    codes = []
    for _ in range(3):
        challenge = response.json()["SecurityChallenges"][0]
        response = flinks.authorize(
            {"RequestId": request_id, "SecurityResponses": wrong_responses(challenge)}
        )
        codes.append((response.status_code, "SecurityChallenges" in response.json()))
    after = flinks.authorize({"RequestId": request_id, "SecurityResponses": {"x": ["y"]}})

    assert codes == [(401, True), (401, True), (401, False)]
    assert after.json()["FlinksCode"] == "SESSION_NONEXISTENT"


# -- mfa_token_reuse --------------------------------------------------------------------------


def test_token_reuse_refused_then_a_fresh_token_continues(flinks: SandboxApi) -> None:
    _switch(flinks, mfa_token_reuse="refuse")
    token = flinks.token()
    challenge = flinks.live("Greatday", token=token)

    reused = flinks.answer(challenge, token=token)
    fresh = flinks.answer(challenge, token=flinks.token())

    assert reused.status_code == 401
    assert reused.json() == {
        "HttpStatusCode": 401,
        "Message": "You must provide a valid authorize token",
        "FlinksCode": "ACCESS_DENIED",
    }
    assert fresh.status_code == 200
    assert fresh.json()["RequestId"] == challenge.json()["RequestId"]


# -- api_key_check ----------------------------------------------------------------------------

DATA_CALLS = [
    ("POST", "GetAccountsSummary"),
    ("GET", "GetAccountsSummaryAsync/{rid}"),
    ("POST", "GetAccountsDetail"),
    ("GET", "GetAccountsDetailAsync/{rid}"),
    ("GET", "AuthorizeAsync/{rid}"),
    ("PATCH", "SetScheduledRefresh"),
    ("DELETE", "DeleteCard/{login}"),
]


def _data_call(
    flinks: SandboxApi, method: str, path: str, headers: dict[str, str]
) -> httpx.Response:
    session = flinks.connect()
    rid, login = session["RequestId"], session["Login"]["Id"]
    body = {"RequestId": rid, "LoginId": login, "IsActivated": True}
    url = f"{flinks.api}/{path.format(rid=rid, login=login)}"
    return flinks.http.request(
        method, url, json=None if method in ("GET", "DELETE") else body, headers=headers
    )


@pytest.mark.parametrize(("method", "path"), DATA_CALLS)
def test_the_api_key_required_or_optional(flinks: SandboxApi, method: str, path: str) -> None:
    required = _data_call(flinks, method, path, {})
    _switch(flinks, api_key_check="optional")
    optional = _data_call(flinks, method, path, {})
    wrong = _data_call(flinks, method, path, {"x-api-key": "not-the-key"})
    _switch(flinks, api_key_check="required")
    right = _data_call(flinks, method, path, {"x-api-key": flinks.api_key})

    for refused in (required, wrong):
        assert refused.status_code == 401
        assert refused.json()["FlinksCode"] == "ACCESS_DENIED"
    assert optional.status_code in (200, 202)
    assert right.status_code in (200, 202)


# -- unknown_customer_code and invalid_login_status -------------------------------------------


@pytest.mark.parametrize("code", ["ACCESS_DENIED", "CUSTOMER_NOT_FOUND"])
def test_an_unknown_customer_id(flinks: SandboxApi, code: str) -> None:
    _switch(flinks, unknown_customer_code=code)

    response = flinks.http.post(
        f"{flinks.sandbox.base_url}/v3/00000000-0000-0000-0000-000000000000"
        "/BankingServices/GenerateAuthorizeToken",
        headers={"flinks-auth-key": flinks.secret},
    )

    assert response.status_code == 401
    assert response.json()["FlinksCode"] == code


@pytest.mark.parametrize("status", [401, 400])
def test_invalid_login_and_invalid_request_status(flinks: SandboxApi, status: int) -> None:
    _switch(flinks, invalid_login_status=status)

    login = flinks.live("Greatday", "wrong-password")
    login_id = flinks.authorize(
        {"LoginId": "5e115eac-1209-4f19-641c-08d6d484e2fe", "MostRecentCached": True}
    )
    request = flinks.authorize({"Username": "Greatday"})
    other = flinks.live("test_disabled_account")

    for response, code in (
        (login, "INVALID_LOGIN"),
        (login_id, "INVALID_LOGIN"),
        (request, "INVALID_REQUEST"),
    ):
        assert response.status_code == status
        assert response.json()["HttpStatusCode"] == status
        assert response.json()["FlinksCode"] == code
    # An unknown LoginId, cached: the documented message (contract 8).
    assert login_id.json()["Message"] == (
        "The LoginId provided is either invalid or does not belong to the CustomerId"
    )
    assert other.status_code == 401  # other 401 codes keep their status


# -- cosmetic differences (contract 12.1) -----------------------------------------------------


def test_a_data_202_carries_the_async_link_of_a_real_answer(flinks: SandboxApi) -> None:
    request_id = flinks.connect()["RequestId"]

    pending = flinks.data("GetAccountsDetail", {"RequestId": request_id}).json()

    assert pending["Links"] == [
        {
            "rel": "GetAccountsDetailAsync",
            "href": "/GetAccountsDetailAsync",
            "example": f"/GetAccountsDetailAsync/{request_id}",
        }
    ]
    assert pending["HttpStatusCode"] == 202
    assert pending["FlinksCode"] == "OPERATION_PENDING"
    assert pending["Message"] == "Your operation is still processing."
