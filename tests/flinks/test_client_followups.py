"""What follows a first /Authorize: every MFA type's choices, a wrong answer Flinks asks again
after, a refused token on the MFA continuation, and following a 202 on AuthorizeAsync with the
API key (which goes nowhere else)."""

from __future__ import annotations

import json

import httpx
import pytest
from pydantic import SecretStr

from app.flinks import (
    Connected,
    Failed,
    FlinksChallenge,
    FlinksClient,
    FlinksRejected,
    FlinksUnavailable,
    MfaRequired,
    Pending,
    RetryPolicy,
)
from tests.flinks.fakes import (
    API_KEY,
    AUTHORIZE,
    AUTHORIZE_ASYNC,
    BANKING_PATH,
    LOGIN_ID,
    MINT,
    REQUEST_ID,
    FakeFlinks,
    RecordedSleeps,
    connected_body,
    make_client,
    mfa_body,
    respond,
    status_body,
)

TOKEN = SecretStr("token-canary-from-the-203")
ANSWERS = {"What shape do people like most?": ["Triangle"]}
REQUEST_GUID = "a10fbd41-d942-4a1f-b202-16f63b5a9a81"


@pytest.mark.parametrize(
    ("kind", "iterables"),
    [
        ("QuestionAndAnswer", ["Toronto", "Montreal"]),
        ("MultipleChoice", ["3", "7"]),
        ("MultipleChoiceMultipleAnswers", ["Circle", "Star", "Triangle"]),
        ("ImageSelection", ["iVBORw0KGgoAAAA1", "iVBORw0KGgoAAAA2"]),
        ("TextOrCall", ["•••-•••-4242", "•••-•••-1313"]),
    ],
)
async def test_a_203_keeps_each_challenge_s_choices_in_order(
    fake: FakeFlinks, flinks: FlinksClient, kind: str, iterables: list[str]
) -> None:
    fake.script(AUTHORIZE, respond(203, mfa_body("Pick one", Type=kind, Iterables=iterables)))

    outcome = await flinks.authorize_live(login_id=LOGIN_ID)

    assert isinstance(outcome, MfaRequired)
    assert outcome.challenges == (FlinksChallenge(kind, "Pick one", tuple(iterables)),)
    assert not outcome.rejected


async def test_a_203_without_iterables_has_no_choices(
    fake: FakeFlinks, flinks: FlinksClient
) -> None:
    fake.script(AUTHORIZE, respond(203, mfa_body("What city were you born in?")))

    outcome = await flinks.authorize_live(login_id=LOGIN_ID)

    assert isinstance(outcome, MfaRequired)
    assert outcome.challenges[0].choices == ()


async def test_iterables_that_are_not_strings_are_a_bad_response(
    fake: FakeFlinks, flinks: FlinksClient
) -> None:
    fake.script(AUTHORIZE, respond(203, mfa_body("Pick", Iterables=[{"x": 1}])))

    with pytest.raises(Exception, match="unexpected body"):
        await flinks.authorize_live(login_id=LOGIN_ID)


async def test_a_401_carrying_new_challenges_asks_again(
    fake: FakeFlinks, flinks: FlinksClient
) -> None:
    """Public clients read a 401 INVALID_SECURITY_RESPONSE with SecurityChallenges as a new
    question for the same RequestId (contract 12.1 #9)."""
    body: dict[str, object] = {
        **status_body(401, "INVALID_SECURITY_RESPONSE"),
        "SecurityChallenges": [{"Type": "QuestionAndAnswer", "Prompt": "Your pet's name?"}],
        "Institution": "FlinksCapital",
    }
    fake.script(AUTHORIZE, respond(401, body))

    outcome = await flinks.answer_mfa(token=TOKEN, request_id=REQUEST_ID, responses=ANSWERS)

    assert isinstance(outcome, MfaRequired)
    assert outcome.rejected
    assert outcome.request_id == REQUEST_ID
    assert outcome.challenges == (FlinksChallenge("QuestionAndAnswer", "Your pet's name?"),)
    assert outcome.token == TOKEN
    assert len(fake.calls(AUTHORIZE)) == 1


async def test_a_wrong_answer_without_new_challenges_is_failed(
    fake: FakeFlinks, flinks: FlinksClient
) -> None:
    fake.script(AUTHORIZE, respond(401, status_body(401, "INVALID_SECURITY_RESPONSE")))

    outcome = await flinks.answer_mfa(token=TOKEN, request_id=REQUEST_ID, responses=ANSWERS)

    assert isinstance(outcome, Failed)
    assert outcome.outcome.code == "invalid_security_response"


@pytest.mark.parametrize(
    "refusal",
    [
        status_body(401, "ACCESS_DENIED", "You must provide a valid authorize token"),
        {"HttpStatusCode": 401, "Message": "You must provide a valid authorize token"},
    ],
    ids=["access-denied", "no-code"],
)
async def test_a_refused_token_is_answered_again_once_with_a_fresh_one(
    fake: FakeFlinks, flinks: FlinksClient, refusal: object
) -> None:
    fake.script(AUTHORIZE, respond(401, refusal), respond(200, connected_body()))

    outcome = await flinks.answer_mfa(token=TOKEN, request_id=REQUEST_ID, responses=ANSWERS)

    assert isinstance(outcome, Connected)
    reused, fresh = fake.calls(AUTHORIZE)
    assert reused.headers["flinks-auth-key"] == TOKEN.get_secret_value()
    assert fresh.headers["flinks-auth-key"] == fake.minted[0]
    assert (
        json.loads(fresh.content)
        == json.loads(reused.content)
        == {
            "RequestId": REQUEST_ID,
            "SecurityResponses": ANSWERS,
        }
    )


async def test_a_fresh_token_refused_too_is_not_retried_again(
    fake: FakeFlinks, flinks: FlinksClient
) -> None:
    refusal = respond(401, status_body(401, "ACCESS_DENIED"))
    fake.script(AUTHORIZE, refusal, refusal, respond(200, connected_body()))

    outcome = await flinks.answer_mfa(token=TOKEN, request_id=REQUEST_ID, responses=ANSWERS)

    assert isinstance(outcome, Failed)
    assert outcome.outcome.code == "access_denied"
    assert len(fake.calls(AUTHORIZE)) == 2
    assert len(fake.calls(MINT)) == 1


async def test_a_203_that_follows_a_fresh_token_carries_that_token(
    fake: FakeFlinks, flinks: FlinksClient
) -> None:
    fake.script(
        AUTHORIZE,
        respond(401, status_body(401, "ACCESS_DENIED")),
        respond(203, mfa_body("Enter the code")),
    )

    outcome = await flinks.answer_mfa(token=TOKEN, request_id=REQUEST_ID, responses=ANSWERS)

    assert isinstance(outcome, MfaRequired)
    assert outcome.token is not None
    assert outcome.token.get_secret_value() == fake.minted[0]


async def test_without_a_token_the_answer_goes_with_a_fresh_one(
    fake: FakeFlinks, flinks: FlinksClient
) -> None:
    fake.script(AUTHORIZE, respond(200, connected_body()))

    await flinks.answer_mfa(token=None, request_id=REQUEST_ID, responses=ANSWERS)

    mint, authorize = fake.requests
    assert mint.url.path.endswith("/GenerateAuthorizeToken")
    assert authorize.headers["flinks-auth-key"] == fake.minted[0]


# --- AuthorizeAsync ---------------------------------------------------------------------------


async def test_authorize_async_gets_the_request_id_with_the_api_key_only(
    fake: FakeFlinks, flinks: FlinksClient
) -> None:
    fake.script(AUTHORIZE_ASYNC, respond(202, status_body(202, "OPERATION_PENDING")))

    outcome = await flinks.authorize_async(request_id=REQUEST_GUID)

    assert outcome == Pending(REQUEST_ID, "OPERATION_PENDING")
    (request,) = fake.requests  # no token is minted: the async endpoint takes none
    assert request.method == "GET"
    assert request.url == (
        f"https://toolbox-api.private.fin.ag{BANKING_PATH}/AuthorizeAsync/{REQUEST_GUID}"
    )
    assert request.headers["x-api-key"] == API_KEY
    assert request.headers["accept"] == "application/json"
    assert "flinks-auth-key" not in request.headers
    assert request.content == b""


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (respond(200, connected_body()), Connected),
        (respond(203, mfa_body("What city were you born in?")), MfaRequired),
        (respond(401, status_body(401, "RETRY_LATER")), Failed),
        (respond(400, status_body(400, "SESSION_NONEXISTENT")), Failed),
    ],
    ids=["200", "203", "401-retry-later", "400-session-nonexistent"],
)
async def test_authorize_async_answers_what_authorize_would_have(
    fake: FakeFlinks, flinks: FlinksClient, reply: httpx.Response, expected: type
) -> None:
    fake.script(AUTHORIZE_ASYNC, reply)

    outcome = await flinks.authorize_async(request_id=REQUEST_GUID)

    assert isinstance(outcome, expected)
    if isinstance(outcome, MfaRequired):
        assert outcome.token is None  # no token produced it: the answer needs a fresh one


async def test_a_refused_api_key_says_nothing_about_the_login(
    fake: FakeFlinks, flinks: FlinksClient
) -> None:
    fake.script(AUTHORIZE_ASYNC, respond(401, status_body(401, "ACCESS_DENIED")))

    with pytest.raises(FlinksRejected) as caught:
        await flinks.authorize_async(request_id=REQUEST_GUID)

    assert (caught.value.status, caught.value.flinks_code) == (401, "ACCESS_DENIED")
    assert API_KEY not in str(caught.value)


async def test_authorize_async_is_a_read_and_is_retried_when_flinks_is_unavailable(
    fake: FakeFlinks, flinks: FlinksClient, sleeps: RecordedSleeps
) -> None:
    fake.script(AUTHORIZE_ASYNC, respond(503), httpx.ReadTimeout, respond(200, connected_body()))

    assert isinstance(await flinks.authorize_async(request_id=REQUEST_GUID), Connected)
    assert len(fake.calls(AUTHORIZE_ASYNC)) == 3
    assert len(sleeps.delays) == 2


async def test_authorize_async_gives_up_within_its_budget(
    fake: FakeFlinks, flinks: FlinksClient
) -> None:
    fake.script(AUTHORIZE_ASYNC, *[respond(503)] * 5)

    with pytest.raises(FlinksUnavailable):
        await flinks.authorize_async(request_id=REQUEST_GUID)
    assert len(fake.calls(AUTHORIZE_ASYNC)) == 3


@pytest.mark.parametrize("request_id", ["", "../GenerateAuthorizeToken", "a b", "x" * 65])
async def test_a_request_id_that_is_not_an_id_is_refused_before_any_call(
    fake: FakeFlinks, flinks: FlinksClient, request_id: str
) -> None:
    with pytest.raises(ValueError, match="request_id"):
        await flinks.authorize_async(request_id=request_id)
    assert fake.requests == []


async def test_without_an_api_key_none_is_sent(fake: FakeFlinks, retry: RetryPolicy) -> None:
    fake.script(AUTHORIZE_ASYNC, respond(202, status_body(202, "OPERATION_PENDING")))
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake.handle)) as http:
        flinks = make_client(http, retry, api_key=None)
        await flinks.authorize_async(request_id=REQUEST_GUID)
    assert "x-api-key" not in fake.requests[0].headers


async def test_the_api_key_goes_to_the_async_endpoint_and_nowhere_else(
    fake: FakeFlinks, flinks: FlinksClient
) -> None:
    fake.script(
        AUTHORIZE,
        respond(202, status_body(202, "OPERATION_DISPATCHED")),
        respond(203, mfa_body("q?")),
        respond(200, connected_body()),
    )
    fake.script(AUTHORIZE_ASYNC, respond(200, connected_body()))

    await flinks.authorize_live(login_id=LOGIN_ID)
    await flinks.authorize_async(request_id=REQUEST_GUID)
    await flinks.authorize_cached(login_id=LOGIN_ID)
    await flinks.answer_mfa(token=None, request_id=REQUEST_ID, responses={"q?": ["a"]})

    for request in fake.requests:
        carries = API_KEY in str(request.url) or API_KEY.encode() in request.content
        carries |= any(API_KEY in value for value in request.headers.values())
        assert carries == request.url.path.startswith(f"{BANKING_PATH}/AuthorizeAsync/")
