"""Every MFA type end to end: the BFF (in process, Connect signing in live) -> the sandbox over
HTTP, against each reading of Flinks' documents the sandbox offers as a switch: the token sent
back with the answers (`mfa_token_reuse`) and what a wrong answer does (`wrong_answer`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from app.main import create_app
from tests.conftest import serve_in_process
from tests.integration.conftest import Sandbox, bff_settings
from tests.integration.connect_steps import (
    MFA_USERS,
    answer,
    answer_until_connected,
    complete,
    right_answer,
    start,
    status,
    wrong_answer,
)

# The type of each user's first challenge, and of the ones that follow (app/sandbox/README.md).
FIRST_TYPE = {
    "Greatday": "QuestionAndAnswer",
    "test_mfa_question_choices": "QuestionAndAnswer",
    "test_mfa_multiple_choice": "MultipleChoice",
    "test_mfa_multiple_answers": "MultipleChoiceMultipleAnswers",
    "test_mfa_image": "ImageSelection",
    "test_mfa_text_or_call": "TextOrCall",
}
ROUNDS = {"test_mfa_text_or_call": 2}  # the number and method, then the code sent


@pytest.fixture
async def live(redis_url: str, redis: Redis, sandbox: Sandbox) -> AsyncIterator[httpx.AsyncClient]:
    """The BFF with Connect signing in live (as OAuth always does), so the bank asks."""
    settings = bff_settings(redis_url, sandbox, FLINKS_CONNECT_AUTHORIZE="live")
    async with serve_in_process(create_app(settings)) as client:
        yield client


async def _challenged(
    client: httpx.AsyncClient, sandbox: Sandbox, username: str
) -> tuple[str, dict[str, Any]]:
    started = await start(client)
    login_id = await sandbox.issue_login(username)
    response = await complete(client, started["flow_id"], login_id)
    assert response.status_code == 200, response.text
    flow: dict[str, Any] = response.json()
    assert flow["status"] == "mfa_required", flow
    return started["flow_id"], flow


@pytest.mark.parametrize("token_reuse", ["allow", "refuse"])
@pytest.mark.parametrize("username", MFA_USERS)
async def test_every_mfa_type_shows_its_choices_and_connects(
    live: httpx.AsyncClient, sandbox: Sandbox, username: str, token_reuse: str
) -> None:
    await sandbox.switch(mfa_token_reuse=token_reuse)
    flow_id, flow = await _challenged(live, sandbox, username)

    (challenge,) = flow["mfa"]["challenges"]
    assert set(challenge) == {"type", "prompt", "choices"}
    assert challenge["type"] == FIRST_TYPE[username]
    assert flow["mfa"]["attempt"] == 1
    assert (challenge["choices"] == []) == (username == "Greatday")
    if username == "test_mfa_image":
        assert all(choice.startswith("iVBORw0KGgo") for choice in challenge["choices"])  # PNGs

    done = await answer_until_connected(live, flow_id, flow)
    assert done["status"] == "connected", done
    assert done["mfa"] is None

    live_call, *continuations = await sandbox.authorize_calls()
    assert (live_call["most_recent_cached"], live_call["status"]) == (False, 203)
    request_id = live_call["response_request_id"]
    assert {c["request_id"] for c in continuations} == {request_id}
    accepted = [c for c in continuations if c["status"] != 401]
    assert len(accepted) == ROUNDS.get(username, 1)
    if token_reuse == "allow":
        # The legacy reading: the token that got the 203 goes back with the answers.
        assert {c["token"] for c in continuations} == {live_call["token"]}
    else:
        # Single use: each reuse is refused, then the same answers go with a fresh token.
        refused = [c for c in continuations if c["status"] == 401]
        assert len(refused) == len(accepted)
        for reused, fresh in zip(continuations[::2], continuations[1::2], strict=True):
            assert (reused["status"], reused["flinks_code"]) == (401, "ACCESS_DENIED")
            assert fresh["status"] in (200, 203)
            assert fresh["token"] not in {reused["token"], live_call["token"]}
            assert fresh["fields"] == reused["fields"] == ["RequestId", "SecurityResponses"]


def _two(challenge: dict[str, Any]) -> list[str]:
    return right_answer(challenge) + ["and another"]


def _unoffered(challenge: dict[str, Any]) -> list[str]:
    return ["Atlantis"]


def _repeated(challenge: dict[str, Any]) -> list[str]:
    return [right_answer(challenge)[0]] * 2


def _blank(challenge: dict[str, Any]) -> list[str]:
    return ["   "]


def _number_only(challenge: dict[str, Any]) -> list[str]:
    return [challenge["choices"][0]]


def _by_fax(challenge: dict[str, Any]) -> list[str]:
    return [challenge["choices"][0], "Fax"]


def _unknown_number(challenge: dict[str, Any]) -> list[str]:
    return ["•••-•••-0000", "Text"]


@pytest.mark.parametrize(
    ("username", "bad"),
    [
        ("Greatday", _two),
        ("Greatday", _blank),
        ("test_mfa_question_choices", _unoffered),
        ("test_mfa_question_choices", _two),
        ("test_mfa_multiple_choice", _unoffered),
        ("test_mfa_multiple_choice", _two),
        ("test_mfa_multiple_answers", _repeated),
        ("test_mfa_multiple_answers", _unoffered),
        ("test_mfa_image", _unoffered),
        ("test_mfa_text_or_call", _number_only),
        ("test_mfa_text_or_call", _by_fax),
        ("test_mfa_text_or_call", _unknown_number),
    ],
)
async def test_an_answer_that_does_not_fit_its_challenge_is_refused_before_it_is_sent(
    live: httpx.AsyncClient,
    sandbox: Sandbox,
    username: str,
    bad: Callable[[dict[str, Any]], list[str]],
) -> None:
    flow_id, flow = await _challenged(live, sandbox, username)
    (challenge,) = flow["mfa"]["challenges"]
    before = await sandbox.authorize_calls()

    response = await answer(live, flow_id, {challenge["prompt"]: bad(challenge)})

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "validation_error"
    assert f'"{challenge["prompt"]}"' in response.json()["detail"]
    assert await sandbox.authorize_calls() == before
    after = await status(live, flow_id)
    assert after["status"] == "mfa_required"
    assert after["mfa"] == flow["mfa"]
    # The flow can still be answered right.
    assert (await answer_until_connected(live, flow_id, after))["status"] == "connected"


async def test_answers_keyed_by_another_prompt_are_refused(
    live: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    flow_id, _ = await _challenged(live, sandbox, "Greatday")
    before = await sandbox.authorize_calls()
    response = await answer(live, flow_id, {"Favourite colour?": ["x"]})
    assert response.status_code == 422
    assert await sandbox.authorize_calls() == before
    assert (await status(live, flow_id))["status"] == "mfa_required"


@pytest.mark.parametrize("username", ["Greatday", "test_mfa_multiple_choice"])
async def test_a_wrong_answer_that_ends_the_session_fails_the_flow(
    live: httpx.AsyncClient, sandbox: Sandbox, username: str
) -> None:
    await sandbox.switch(wrong_answer="fail")
    flow_id, flow = await _challenged(live, sandbox, username)
    (challenge,) = flow["mfa"]["challenges"]

    answered = await answer(live, flow_id, {challenge["prompt"]: wrong_answer(challenge)})

    assert answered.status_code == 200, answered.text
    body = answered.json()
    assert body["status"] == "failed"
    assert body["error"]["code"] == "invalid_security_response"
    again = await answer(live, flow_id, {challenge["prompt"]: right_answer(challenge)})
    assert again.status_code == 409


@pytest.mark.parametrize("token_reuse", ["allow", "refuse"])
@pytest.mark.parametrize("username", ["Greatday", "test_mfa_multiple_choice"])
async def test_a_wrong_answer_with_a_new_challenge_asks_it_with_the_attempt_count(
    live: httpx.AsyncClient, sandbox: Sandbox, username: str, token_reuse: str
) -> None:
    await sandbox.switch(wrong_answer="new_challenge", mfa_token_reuse=token_reuse)
    flow_id, flow = await _challenged(live, sandbox, username)
    (first,) = flow["mfa"]["challenges"]

    answered = await answer(live, flow_id, {first["prompt"]: wrong_answer(first)})

    assert answered.status_code == 200, answered.text
    asked = answered.json()
    assert asked["status"] == "mfa_required", asked
    assert asked["mfa"]["attempt"] == 2
    (second,) = asked["mfa"]["challenges"]
    assert second["prompt"] != first["prompt"]
    assert await status(live, flow_id) == asked
    done = await answer_until_connected(live, flow_id, asked)
    assert done["status"] == "connected"
    request_ids = {c["response_request_id"] for c in await sandbox.authorize_calls()}
    assert len(request_ids - {None}) == 1  # one Flinks session throughout


async def test_wrong_answers_count_up_until_the_bank_gives_up(
    live: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    await sandbox.switch(wrong_answer="new_challenge")
    flow_id, flow = await _challenged(live, sandbox, "Greatday")
    attempts = []
    while flow["status"] == "mfa_required":
        attempts.append(flow["mfa"]["attempt"])
        (challenge,) = flow["mfa"]["challenges"]
        flow = (await answer(live, flow_id, {challenge["prompt"]: ["Atlantis"]})).json()
    # The sandbox ends the session at the third wrong answer (banks lock sign-ins).
    assert attempts == [1, 2, 3]
    assert flow["status"] == "failed"
    assert flow["error"]["code"] == "invalid_security_response"
