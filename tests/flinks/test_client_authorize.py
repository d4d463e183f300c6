"""/Authorize: live login and MFA continuation, every status class, and the no-retry rule."""

from __future__ import annotations

import json

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from app.flinks import (
    Connected,
    Failed,
    FlinksBadResponse,
    FlinksChallenge,
    FlinksClient,
    FlinksRejected,
    FlinksTimeout,
    FlinksUnavailable,
    MfaRequired,
    Pending,
)
from tests.flinks.fakes import (
    AUTHORIZE,
    BANKING_PATH,
    LOGIN_ID,
    MINT,
    NOT_FAILURES,
    REQUEST_ID,
    SECRET,
    SECTION_8_CODES,
    FakeFlinks,
    RecordedSleeps,
    connected_body,
    mfa_body,
    respond,
    status_body,
)


def body_of(request: httpx.Request) -> object:
    return json.loads(request.content)


def assert_json_post(request: httpx.Request, token: str) -> None:
    assert request.method == "POST"
    assert request.url == f"https://toolbox-api.private.fin.ag{BANKING_PATH}/Authorize"
    assert request.headers["flinks-auth-key"] == token
    assert request.headers["content-type"] == "application/json"
    assert request.headers["accept"] == "application/json"


async def test_live_authorize_mints_a_token_and_sends_exactly_the_documented_body(
    fake: FakeFlinks, flinks: FlinksClient
) -> None:
    fake.script(AUTHORIZE, respond(200, connected_body()))

    await flinks.authorize_live(login_id=LOGIN_ID, language="fr", tag="flow-7")

    mint, authorize = fake.requests
    assert_json_post(authorize, fake.minted[0])
    assert list(json.loads(authorize.content).items()) == [
        ("LoginId", LOGIN_ID),
        ("MostRecentCached", False),
        ("Save", True),
        ("Language", "fr"),
        ("Tag", "flow-7"),
    ]


async def test_the_secret_key_is_sent_only_to_generate_authorize_token(
    fake: FakeFlinks, flinks: FlinksClient
) -> None:
    fake.script(AUTHORIZE, respond(203, mfa_body("What city were you born in?")))
    mfa = await flinks.authorize_live(login_id=LOGIN_ID)
    assert isinstance(mfa, MfaRequired)
    fake.script(AUTHORIZE, respond(200, connected_body()))
    await flinks.answer_mfa(token=mfa.token, request_id=mfa.request_id, responses={"q": ["a"]})

    for request in fake.requests:
        carries_secret = SECRET in str(request.url) or SECRET.encode() in request.content
        carries_secret |= any(SECRET in value for value in request.headers.values())
        assert carries_secret == (request.url.path.endswith("/GenerateAuthorizeToken"))


async def test_live_authorize_without_a_tag_sends_no_tag(
    fake: FakeFlinks, flinks: FlinksClient
) -> None:
    fake.script(AUTHORIZE, respond(200, connected_body()))

    await flinks.authorize_live(login_id=LOGIN_ID)

    assert body_of(fake.calls(AUTHORIZE)[0]) == {
        "LoginId": LOGIN_ID,
        "MostRecentCached": False,
        "Save": True,
        "Language": "en",
    }


async def test_200_is_connected(fake: FakeFlinks, flinks: FlinksClient) -> None:
    fake.script(AUTHORIZE, respond(200, connected_body() | {"Unknown": {"x": 1}}))

    outcome = await flinks.authorize_live(login_id=LOGIN_ID)

    assert outcome == Connected(
        login_id=LOGIN_ID,
        request_id=REQUEST_ID,
        institution="FlinksCapital",
        username="Greatday",
        is_scheduled_refresh=False,
    )
    assert LOGIN_ID not in repr(outcome)
    assert REQUEST_ID not in repr(outcome)


async def test_200_without_login_keeps_the_login_id_that_was_sent(
    fake: FakeFlinks, flinks: FlinksClient
) -> None:
    fake.script(AUTHORIZE, respond(200, {"HttpStatusCode": 200, "RequestId": REQUEST_ID}))

    outcome = await flinks.authorize_live(login_id=LOGIN_ID)

    assert outcome == Connected(LOGIN_ID, REQUEST_ID, None, None, None)


async def test_203_is_mfa_required_with_the_token_to_answer_with(
    fake: FakeFlinks, flinks: FlinksClient
) -> None:
    fake.script(AUTHORIZE, respond(203, mfa_body("What shape do people like most?", "2 + 2?")))

    outcome = await flinks.authorize_live(login_id=LOGIN_ID)

    assert isinstance(outcome, MfaRequired)
    assert outcome.request_id == REQUEST_ID
    assert outcome.institution == "FlinksCapital"
    assert outcome.challenges == (
        FlinksChallenge("QuestionAndAnswer", "What shape do people like most?"),
        FlinksChallenge("QuestionAndAnswer", "2 + 2?"),
    )
    assert outcome.token is not None
    assert outcome.token.get_secret_value() == fake.minted[0]
    assert fake.minted[0] not in repr(outcome)


@pytest.mark.parametrize("code", ["OPERATION_PENDING", "OPERATION_DISPATCHED"])
async def test_202_is_pending(fake: FakeFlinks, flinks: FlinksClient, code: str) -> None:
    fake.script(AUTHORIZE, respond(202, status_body(202, code)))

    outcome = await flinks.authorize_live(login_id=LOGIN_ID)

    assert outcome == Pending(request_id=REQUEST_ID, flinks_code=code)


async def test_202_without_a_code_is_pending(fake: FakeFlinks, flinks: FlinksClient) -> None:
    fake.script(AUTHORIZE, respond(202, {"HttpStatusCode": 202}))

    assert await flinks.authorize_live(login_id=LOGIN_ID) == Pending(None, "OPERATION_PENDING")


@pytest.mark.parametrize("code", SECTION_8_CODES)
async def test_401_with_any_section_8_code_is_failed(
    fake: FakeFlinks, flinks: FlinksClient, code: str
) -> None:
    fake.script(AUTHORIZE, respond(401, status_body(401, code)))

    outcome = await flinks.authorize_live(login_id=LOGIN_ID)

    assert isinstance(outcome, Failed)
    assert (outcome.flinks_code, outcome.http_status) == (code, 401)
    expected = "flinks_error" if code in NOT_FAILURES else code.lower()
    assert outcome.outcome.code == expected
    assert len(fake.calls(AUTHORIZE)) == 1


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (400, "SESSION_NONEXISTENT", "session_nonexistent"),
        (400, "INVALID_LOGIN", "invalid_login"),
        (403, "TOO_MANY_REQUESTS", "too_many_requests"),
        (405, "DISABLED_INSTITUTION", "disabled_institution"),
        (401, "SOMETHING_NEW", "flinks_error"),
        (500, "AGGREGATION_ERROR", "aggregation_error"),
    ],
)
async def test_refusals_with_a_flinks_code_are_failed(
    fake: FakeFlinks, flinks: FlinksClient, status: int, code: str, expected: str
) -> None:
    fake.script(AUTHORIZE, respond(status, status_body(status, code)))

    outcome = await flinks.authorize_live(login_id=LOGIN_ID)

    assert isinstance(outcome, Failed)
    assert (outcome.outcome.code, outcome.flinks_code, outcome.http_status) == (
        expected,
        code,
        status,
    )


@pytest.mark.parametrize(
    "body",
    [
        {"HttpStatusCode": 401, "Message": "You must provide a valid authorize token"},
        {"HttpStatusCode": 401, "FlinksCode": "<script>alert(1)</script>"},
        None,
    ],
    ids=["invalid-token", "code-not-shaped-like-a-code", "empty"],
)
async def test_401_without_a_usable_code_is_access_denied(
    fake: FakeFlinks, flinks: FlinksClient, body: object
) -> None:
    fake.script(AUTHORIZE, respond(401, body))

    outcome = await flinks.authorize_live(login_id=LOGIN_ID)

    assert isinstance(outcome, Failed)
    assert (outcome.outcome.code, outcome.flinks_code) == ("access_denied", None)


async def test_4xx_without_a_code_is_rejected(fake: FakeFlinks, flinks: FlinksClient) -> None:
    fake.script(AUTHORIZE, httpx.Response(400, text="<html>Bad Request</html>"))

    with pytest.raises(FlinksRejected) as caught:
        await flinks.authorize_live(login_id=LOGIN_ID)

    assert (caught.value.status, caught.value.flinks_code) == (400, None)
    assert "Bad Request" not in str(caught.value)


@pytest.mark.parametrize(
    "reply",
    [
        respond(503),
        httpx.Response(502, text="<html>bad gateway</html>"),
        respond(500, status_body(500, "SOMETHING_NEW")),
        httpx.ReadTimeout,
        httpx.WriteTimeout,
        httpx.RemoteProtocolError,
        httpx.ReadError,
    ],
    ids=[
        "503",
        "502-html",
        "500-unknown-code",
        "read-timeout",
        "write-timeout",
        "protocol",
        "read",
    ],
)
async def test_live_authorize_is_sent_once_when_it_may_have_reached_flinks(
    fake: FakeFlinks,
    flinks: FlinksClient,
    sleeps: RecordedSleeps,
    reply: httpx.Response | type[httpx.RequestError],
) -> None:
    fake.script(AUTHORIZE, reply, respond(200, connected_body()))

    with pytest.raises((FlinksUnavailable, FlinksTimeout)) as caught:
        await flinks.authorize_live(login_id=LOGIN_ID)

    assert caught.value.may_have_been_sent
    assert caught.value.endpoint == AUTHORIZE
    assert len(fake.calls(AUTHORIZE)) == 1
    assert len(fake.calls(MINT)) == 1
    assert sleeps.delays == []


async def test_429_is_unavailable_with_retry_after_and_not_retried(
    fake: FakeFlinks, flinks: FlinksClient
) -> None:
    fake.script(
        AUTHORIZE, respond(429, status_body(429, "TOO_MANY_REQUESTS"), {"Retry-After": "7"})
    )

    with pytest.raises(FlinksUnavailable) as caught:
        await flinks.authorize_live(login_id=LOGIN_ID)

    assert (caught.value.status, caught.value.retry_after) == (429, 7.0)
    assert len(fake.calls(AUTHORIZE)) == 1


@pytest.mark.parametrize("failure", [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout])
async def test_pre_send_failures_are_retried_each_with_a_fresh_token(
    fake: FakeFlinks,
    flinks: FlinksClient,
    sleeps: RecordedSleeps,
    failure: type[httpx.RequestError],
) -> None:
    fake.script(AUTHORIZE, failure, failure, respond(200, connected_body()))

    outcome = await flinks.authorize_live(login_id=LOGIN_ID)

    assert isinstance(outcome, Connected)
    sent_tokens = [r.headers["flinks-auth-key"] for r in fake.calls(AUTHORIZE)]
    assert sent_tokens == fake.minted
    assert len(set(sent_tokens)) == 3
    assert sleeps.delays == [0.05, 0.1]


async def test_pre_send_retries_are_bounded(fake: FakeFlinks, flinks: FlinksClient) -> None:
    fake.script(AUTHORIZE, *[httpx.ConnectError] * 5)

    with pytest.raises(FlinksUnavailable) as caught:
        await flinks.authorize_live(login_id=LOGIN_ID)

    assert not caught.value.may_have_been_sent
    assert len(fake.calls(AUTHORIZE)) == 3


async def test_a_failed_mint_stops_live_authorize_before_it_is_sent(
    fake: FakeFlinks, flinks: FlinksClient, sleeps: RecordedSleeps
) -> None:
    fake.script(MINT, *[httpx.ConnectError] * 3)

    with pytest.raises(FlinksUnavailable) as caught:
        await flinks.authorize_live(login_id=LOGIN_ID)

    assert caught.value.endpoint == MINT
    assert len(fake.calls(MINT)) == 3  # the mint's own budget, not multiplied by Authorize's
    assert fake.calls(AUTHORIZE) == []


@pytest.mark.parametrize(
    "reply",
    [
        httpx.Response(200, content=b"{not json"),
        respond(200, {"HttpStatusCode": 200}),
        respond(200, connected_body() | {"Login": "not an object"}),
        respond(203, mfa_body()),
        respond(203, {"HttpStatusCode": 203, "SecurityChallenges": [{"Type": "Q"}]}),
        respond(202, ["pending"]),
        respond(201, connected_body()),
        respond(204),
        respond(302, headers={"Location": "https://elsewhere.example/"}),
    ],
    ids=[
        "not-json",
        "200-no-request-id",
        "200-login-not-object",
        "203-no-challenges",
        "203-no-prompt",
        "202-list",
        "201",
        "204",
        "redirect",
    ],
)
async def test_unusable_authorize_answers_are_bad_responses(
    fake: FakeFlinks, flinks: FlinksClient, reply: httpx.Response
) -> None:
    fake.script(AUTHORIZE, reply)

    with pytest.raises(FlinksBadResponse) as caught:
        await flinks.authorize_live(login_id=LOGIN_ID)

    assert caught.value.may_have_been_sent
    assert len(fake.calls(AUTHORIZE)) == 1


async def test_invalid_arguments_are_refused_before_any_call(
    fake: FakeFlinks, flinks: FlinksClient
) -> None:
    with pytest.raises(ValidationError):
        await flinks.authorize_live(login_id=LOGIN_ID, language="de")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        await flinks.authorize_live(login_id="")
    assert fake.requests == []


# --- MFA continuation ---------------------------------------------------------------------

TOKEN = SecretStr("token-canary-from-the-203")
ANSWERS = {"What shape do people like most?": ["Triangle"], "2 + 2?": ["4", "four"]}


async def test_answer_mfa_sends_the_same_token_and_the_answers(
    fake: FakeFlinks, flinks: FlinksClient
) -> None:
    fake.script(AUTHORIZE, respond(200, connected_body()))

    outcome = await flinks.answer_mfa(token=TOKEN, request_id=REQUEST_ID, responses=ANSWERS)

    [request] = fake.requests  # no new token is minted
    assert_json_post(request, TOKEN.get_secret_value())
    assert list(json.loads(request.content).items()) == [
        ("RequestId", REQUEST_ID),
        ("SecurityResponses", ANSWERS),
    ]
    assert outcome == Connected(LOGIN_ID, REQUEST_ID, "FlinksCapital", "Greatday", False)


async def test_another_203_keeps_the_same_token(fake: FakeFlinks, flinks: FlinksClient) -> None:
    fake.script(AUTHORIZE, respond(203, mfa_body("And your pet's name?")))

    outcome = await flinks.answer_mfa(token=TOKEN, request_id=REQUEST_ID, responses=ANSWERS)

    assert isinstance(outcome, MfaRequired)
    assert outcome.token == TOKEN


async def test_a_wrong_answer_may_be_answered_again(fake: FakeFlinks, flinks: FlinksClient) -> None:
    fake.script(AUTHORIZE, respond(401, status_body(401, "INVALID_SECURITY_RESPONSE")))

    outcome = await flinks.answer_mfa(token=TOKEN, request_id=REQUEST_ID, responses=ANSWERS)

    assert isinstance(outcome, Failed)
    assert outcome.outcome.code == "invalid_security_response"
    assert outcome.outcome.can_retry_mfa


async def test_a_200_answer_without_a_login_id_is_a_bad_response(
    fake: FakeFlinks, flinks: FlinksClient
) -> None:
    fake.script(AUTHORIZE, respond(200, connected_body(login_id=None)))

    with pytest.raises(FlinksBadResponse):
        await flinks.answer_mfa(token=TOKEN, request_id=REQUEST_ID, responses=ANSWERS)


async def test_answer_mfa_is_sent_once_on_read_timeout(
    fake: FakeFlinks, flinks: FlinksClient
) -> None:
    fake.script(AUTHORIZE, httpx.ReadTimeout, respond(200, connected_body()))

    with pytest.raises(FlinksTimeout):
        await flinks.answer_mfa(token=TOKEN, request_id=REQUEST_ID, responses=ANSWERS)

    assert len(fake.calls(AUTHORIZE)) == 1


async def test_answer_mfa_retries_a_connect_error_with_the_same_token(
    fake: FakeFlinks, flinks: FlinksClient
) -> None:
    fake.script(AUTHORIZE, httpx.ConnectError, respond(200, connected_body()))

    await flinks.answer_mfa(token=TOKEN, request_id=REQUEST_ID, responses=ANSWERS)

    sent = [r.headers["flinks-auth-key"] for r in fake.calls(AUTHORIZE)]
    assert sent == [TOKEN.get_secret_value()] * 2
    assert fake.calls(MINT) == []


async def test_answers_must_be_sequences_not_strings(
    fake: FakeFlinks, flinks: FlinksClient
) -> None:
    with pytest.raises(TypeError):
        await flinks.answer_mfa(token=TOKEN, request_id=REQUEST_ID, responses={"q": "Triangle"})
    assert fake.requests == []


# --- cached /Authorize (re-checking a pending session) --------------------------------------


async def test_cached_authorize_sends_login_id_and_most_recent_cached_only(
    fake: FakeFlinks, flinks: FlinksClient
) -> None:
    fake.script(AUTHORIZE, respond(200, connected_body()))

    outcome = await flinks.authorize_cached(login_id=LOGIN_ID)

    _, request = fake.requests
    assert_json_post(request, fake.minted[0])
    assert list(json.loads(request.content).items()) == [
        ("LoginId", LOGIN_ID),
        ("MostRecentCached", True),
    ]
    assert isinstance(outcome, Connected)


async def test_cached_authorize_reports_a_session_still_pending(
    fake: FakeFlinks, flinks: FlinksClient
) -> None:
    fake.script(AUTHORIZE, respond(202, status_body(202, "OPERATION_PENDING")))

    assert await flinks.authorize_cached(login_id=LOGIN_ID) == Pending(
        REQUEST_ID, "OPERATION_PENDING"
    )


async def test_cached_authorize_follows_the_same_no_retry_rule(
    fake: FakeFlinks, flinks: FlinksClient
) -> None:
    fake.script(AUTHORIZE, httpx.ReadTimeout, respond(200, connected_body()))

    with pytest.raises(FlinksTimeout):
        await flinks.authorize_cached(login_id=LOGIN_ID)

    assert len(fake.calls(AUTHORIZE)) == 1
