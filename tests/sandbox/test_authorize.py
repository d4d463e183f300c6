"""/Authorize: every test user, MFA, token reuse, JSON key casing, the 200 body."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.sandbox.conftest import clean_settings
from tests.sandbox.flinks import ANSWERS, SandboxApi
from tests.sandbox.server import SandboxHandle, running_sandbox

LOGIN_KEYS = {"Username", "IsScheduledRefresh", "LastRefresh", "Type", "Id"}


def test_greatday_nomfa_gets_the_documented_200_body(flinks: SandboxApi) -> None:
    response = flinks.live("greatday_nomfa", Save=True, Language="en")

    assert response.status_code == 200
    body = response.json()
    assert list(body) == [
        "HttpStatusCode",
        "Links",
        "InstitutionName",
        "Login",
        "InstitutionId",
        "Institution",
        "RequestId",
    ]
    assert body["HttpStatusCode"] == 200
    assert {link["rel"] for link in body["Links"]} == {
        "AccountsDetail",
        "AccountsSummary",
        "Statements",
    }
    assert body["InstitutionName"] == body["Institution"] == "FlinksCapital"
    assert body["InstitutionId"] == 14
    assert set(body["Login"]) == LOGIN_KEYS
    assert body["Login"]["Username"] == "greatday_nomfa"
    assert body["Login"]["Type"] == "Personal"
    assert body["Login"]["IsScheduledRefresh"] is False
    refreshed = datetime.fromisoformat(body["Login"]["LastRefresh"]).replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - refreshed).total_seconds()) < 60
    uuid.UUID(body["Login"]["Id"])
    uuid.UUID(body["RequestId"])


def test_greatday_gets_a_203_challenge_then_200(flinks: SandboxApi) -> None:
    token = flinks.token()
    challenge = flinks.live("Greatday", token=token, Save=True)

    assert challenge.status_code == 203
    body = challenge.json()
    assert body["HttpStatusCode"] == 203
    assert body["Links"] == [{"rel": "Authorization", "href": "/Authorize", "example": None}]
    assert body["Institution"] == "FlinksCapital"
    [security] = body["SecurityChallenges"]
    assert security["Type"] == "QuestionAndAnswer"
    assert security["Prompt"] in ANSWERS

    done = flinks.answer(challenge, token=token)

    assert done.status_code == 200
    assert done.json()["RequestId"] == body["RequestId"]
    assert done.json()["Login"]["Username"] == "Greatday"


def test_every_sign_in_starts_with_the_same_question(flinks: SandboxApi) -> None:
    # Per sign-in, not one sequence shared by everyone (issue 19 item 6): a recipe that answers
    # the first question works every time, whoever signed in before.
    flinks.live("Greatday")
    flinks.live("test_mfa_multiple_choice")
    prompts = [flinks.live("Greatday").json()["SecurityChallenges"][0]["Prompt"] for _ in range(3)]

    assert prompts == ["What city were you born in?"] * 3


@pytest.mark.parametrize(
    ("username", "status", "code"),
    [
        ("test_disabled_account", 401, "DISABLED_LOGIN"),
        ("test_service_unavailable", 401, "RETRY_LATER"),
        ("test_dispatched", 202, "OPERATION_DISPATCHED"),
        ("nobody_at_all", 401, "INVALID_LOGIN"),
    ],
)
def test_error_users_get_their_documented_outcome(
    flinks: SandboxApi, username: str, status: int, code: str
) -> None:
    response = flinks.live(username)

    assert response.status_code == status
    body = response.json()
    assert body["HttpStatusCode"] == status
    assert body["FlinksCode"] == code
    assert body["Message"]


def test_dispatched_carries_a_request_id_to_poll(flinks: SandboxApi) -> None:
    body = flinks.live("test_dispatched", Save=True).json()

    polled = flinks.get(f"GetAccountsDetailAsync/{body['RequestId']}")

    assert body["Message"] == (
        "Your operations had been dispatched to background process for long running jobs"
    )
    assert polled.status_code in (200, 202)


def test_a_wrong_password_is_invalid_login(flinks: SandboxApi) -> None:
    response = flinks.live("Greatday", "Nightly")

    assert response.status_code == 401
    assert response.json()["FlinksCode"] == "INVALID_LOGIN"


@pytest.mark.parametrize("username", ["GREATDAY_NOMFA", "GreatDay_NoMfa", " greatday_nomfa "])
def test_usernames_are_case_insensitive(flinks: SandboxApi, username: str) -> None:
    assert flinks.live(username).status_code == 200


def test_the_documented_lower_case_example_works(flinks: SandboxApi) -> None:
    body = {
        "Username": "greatday",
        "Password": "everyday",
        "Institution": "FlinksCapital",
        "Language": "en",
        "MostRecentCached": False,
        "Save": True,
    }
    assert flinks.authorize(body).status_code == 203


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_json_keys_are_matched_case_insensitively(flinks: SandboxApi, data: st.DataObject) -> None:
    def recase(key: str) -> str:
        flips = data.draw(st.lists(st.booleans(), min_size=len(key), max_size=len(key)))
        return "".join(c.upper() if flip else c.lower() for c, flip in zip(key, flips, strict=True))

    body = {
        recase("Username"): "greatday_nomfa",
        recase("Password"): "Everyday",
        recase("Institution"): "FlinksCapital",
        recase("MostRecentCached"): False,
        recase("Save"): True,
    }

    response = flinks.authorize(body)

    assert response.status_code == 200, body
    login_id = response.json()["Login"]["Id"]
    cached = flinks.authorize({recase("LoginId"): login_id, recase("MostRecentCached"): True})
    assert cached.status_code == 200


def test_the_csharp_sdk_spelling_username_is_accepted(flinks: SandboxApi) -> None:
    body = {"UserName": "greatday_nomfa", "Password": "Everyday", "Institution": "FlinksCapital"}
    assert flinks.authorize(body).status_code == 200


def test_boolean_strings_are_accepted(flinks: SandboxApi) -> None:
    login_id = flinks.live("greatday_nomfa", Save="true").json()["Login"]["Id"]

    cached = flinks.authorize({"LoginId": login_id, "MostRecentCached": "true"})

    assert cached.status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"Username": "greatday_nomfa"},
        {"Username": "greatday_nomfa", "Password": "Everyday"},
        {"Username": "greatday_nomfa", "Password": "Everyday", "Institution": "RBC"},
        {
            "Username": "greatday_nomfa",
            "Password": "Everyday",
            "Institution": "FlinksCapital",
            "MostRecentCached": True,
        },
        {"Username": "greatday_nomfa", "Password": "Everyday", "Save": "sometimes"},
    ],
)
def test_incomplete_requests_are_invalid_request(
    flinks: SandboxApi, body: dict[str, object]
) -> None:
    response = flinks.authorize(body)

    assert response.status_code == 401
    assert response.json()["FlinksCode"] == "INVALID_REQUEST"


def test_a_body_that_is_not_json_is_invalid_request(flinks: SandboxApi) -> None:
    response = flinks.http.post(
        f"{flinks.api}/Authorize",
        content=b"Username=greatday",
        headers={"flinks-auth-key": flinks.token()},
    )
    assert response.json()["FlinksCode"] == "INVALID_REQUEST"


def test_the_tag_is_echoed_on_the_200_but_a_203_is_as_documented(flinks: SandboxApi) -> None:
    challenge = flinks.live("Greatday", Tag="order-42")
    done = flinks.answer(challenge)

    # The documented 203 has no Tag (contract 12.1 #17).
    assert list(challenge.json()) == [
        "Links",
        "HttpStatusCode",
        "SecurityChallenges",
        "Institution",
        "RequestId",
    ]
    assert done.json()["Tag"] == "order-42"


# -- MFA ------------------------------------------------------------------------------------


def test_answers_are_case_and_accent_insensitive(flinks: SandboxApi) -> None:
    challenge = flinks.live("Greatday")  # first question: the city
    body = challenge.json()
    answer = {"RequestId": body["RequestId"], "SecurityResponses": {
        body["SecurityChallenges"][0]["Prompt"].upper(): ["  mOnTrÉaL "]
    }}  # fmt: skip

    assert flinks.authorize(answer).status_code == 200


def test_french_prompts_when_language_is_fr(flinks: SandboxApi) -> None:
    challenge = flinks.live("Greatday", Language="fr")

    assert challenge.json()["SecurityChallenges"][0]["Prompt"] == "Dans quelle ville êtes-vous né?"
    assert flinks.answer(challenge).status_code == 200


def test_a_wrong_answer_is_invalid_security_response_and_ends_the_session(
    flinks: SandboxApi,
) -> None:
    token = flinks.token()
    challenge = flinks.live("Greatday", token=token).json()
    wrong = {
        "RequestId": challenge["RequestId"],
        "SecurityResponses": {challenge["SecurityChallenges"][0]["Prompt"]: ["Toronto"]},
    }

    first = flinks.authorize(wrong, token)
    again = flinks.authorize(wrong)

    assert first.status_code == 401
    assert first.json()["FlinksCode"] == "INVALID_SECURITY_RESPONSE"
    assert again.status_code == 400
    assert again.json()["FlinksCode"] == "SESSION_NONEXISTENT"


def test_an_answer_keyed_to_another_prompt_is_unknown_challenge_key(flinks: SandboxApi) -> None:
    challenge = flinks.live("Greatday").json()  # asks the city
    answer = {
        "RequestId": challenge["RequestId"],
        "SecurityResponses": {"What shape do people like most?": ["Triangle"]},
    }

    response = flinks.authorize(answer)

    assert response.status_code == 401
    assert response.json()["FlinksCode"] == "UNKNOWN_CHALLENGE_KEY"


def test_a_continuation_without_answers_gets_the_same_challenge(flinks: SandboxApi) -> None:
    token = flinks.token()
    challenge = flinks.live("Greatday", token=token).json()

    again = flinks.authorize({"RequestId": challenge["RequestId"]}, token)

    assert again.status_code == 203
    assert again.json()["SecurityChallenges"] == challenge["SecurityChallenges"]


def test_an_unknown_request_id_is_session_nonexistent(flinks: SandboxApi) -> None:
    response = flinks.authorize({"RequestId": str(uuid.uuid4()), "SecurityResponses": {"x": ["y"]}})

    assert response.status_code == 400
    assert response.json()["FlinksCode"] == "SESSION_NONEXISTENT"


def test_mfa_sessions_expire_after_8_minutes_of_inactivity(flinks: SandboxApi) -> None:
    challenge = flinks.live("Greatday")
    flinks.control("POST", "clock", {"advance_seconds": 481})

    response = flinks.answer(challenge)

    assert response.json()["FlinksCode"] == "SESSION_NONEXISTENT"


def test_mfa_rounds_can_ask_all_three_questions(http: httpx.Client) -> None:
    with running_sandbox(clean_settings(mfa_rounds=3)) as sandbox:
        client = SandboxApi(sandbox, http)
        token = client.token()
        response = client.live("Greatday", token=token)
        prompts = []
        while response.status_code == 203:
            prompts.append(response.json()["SecurityChallenges"][0]["Prompt"])
            response = client.answer(response, token=token)

        assert response.status_code == 200
        assert len(set(prompts)) == 3


# -- token reuse (contract sections 9.2 and 10) ---------------------------------------------


def test_the_same_token_continues_only_its_own_mfa_session(flinks: SandboxApi) -> None:
    token_a, token_b = flinks.token(), flinks.token()
    session_a = flinks.live("Greatday", token=token_a)
    session_b = flinks.live("Greatday", token=token_b)

    crossed = flinks.answer(session_b, token=token_a)
    own = flinks.answer(session_a, token=token_a)
    after = flinks.answer(session_b, token=token_a)

    assert crossed.status_code == 401
    assert crossed.json()["FlinksCode"] == "ACCESS_DENIED"
    assert own.status_code == 200
    assert after.status_code == 401


def test_a_used_token_cannot_start_anything_else(flinks: SandboxApi) -> None:
    token = flinks.token()
    challenge = flinks.live("Greatday", token=token)

    fresh_start = flinks.live("greatday_nomfa", token=token)
    done = flinks.answer(challenge, token=token)
    reuse_after_success = flinks.answer(challenge, token=token)

    assert fresh_start.json()["FlinksCode"] == "ACCESS_DENIED"
    assert done.status_code == 200
    assert reuse_after_success.json()["FlinksCode"] == "ACCESS_DENIED"


def test_a_fresh_token_may_carry_the_continuation(flinks: SandboxApi) -> None:
    challenge = flinks.live("Greatday")

    assert flinks.answer(challenge, token=flinks.token()).status_code == 200


def test_authorize_without_a_token_is_refused(flinks: SandboxApi) -> None:
    body = {"Username": "greatday_nomfa", "Password": "Everyday", "Institution": "FlinksCapital"}
    missing = flinks.post("Authorize", body)
    secret = flinks.post("Authorize", body, **{"flinks-auth-key": flinks.secret})

    assert missing.status_code == secret.status_code == 401
    assert missing.json()["Message"] == "You must provide a valid authorize token"
    assert secret.json()["FlinksCode"] == "ACCESS_DENIED"


def test_authorize_calls_are_recorded(flinks: SandboxApi, sandbox: SandboxHandle) -> None:
    token = flinks.token()
    challenge = flinks.live("Greatday", token=token, Save=True)
    flinks.answer(challenge, token=token)

    calls = flinks.calls("Authorize")

    assert [c["status"] for c in calls] == [203, 200]
    assert all(c["token"] == token for c in calls)
    assert calls[0]["fields"] == ["Username", "Password", "Institution", "MostRecentCached", "Save"]
    assert calls[0]["save"] is True
    assert calls[0]["most_recent_cached"] is False
    assert calls[1]["fields"] == ["RequestId", "SecurityResponses"]
    assert calls[1]["request_id"] == challenge.json()["RequestId"]
    assert calls[0]["customer_id"] == sandbox.customer_id
