"""Every MFA challenge type in Flinks' shape, checked per type; question order per sign-in."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.sandbox.conftest import clean_settings
from tests.sandbox.flinks import SandboxApi
from tests.sandbox.mfa import PHONE, SECURITY_CODE, is_triangle, png_rows, right_responses
from tests.sandbox.server import running_sandbox

# The sandbox's extension users (Greatday's plain QuestionAndAnswer: test_authorize.py).
# username -> (Type, first Prompt, the Iterables offered)
FIRST_CHALLENGES: dict[str, tuple[str, str, list[str]]] = {
    "test_mfa_question_choices": (
        "QuestionAndAnswer",
        "What city were you born in?",
        ["Toronto", "Montreal", "Vancouver", "Calgary"],
    ),
    "test_mfa_multiple_choice": (
        "MultipleChoice",
        "Which bank did you open your first account with?",
        ["Maple Trust", "Flinks Capital", "Northern Savings", "Harbour Credit"],
    ),
    "test_mfa_multiple_answers": (
        "MultipleChoiceMultipleAnswers",
        "Which of these cities have you lived in?",
        ["Montreal", "Toronto", "Quebec City", "Paris", "Tokyo"],
    ),
    "test_mfa_text_or_call": (
        "TextOrCall",
        "How would you like to receive your one-time security code?",
        ["•••-•••-4242", "•••-•••-1313"],
    ),
}


def _challenge(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 203, response.text
    [challenge] = response.json()["SecurityChallenges"]
    found: dict[str, Any] = challenge
    return found


def _answer(
    flinks: SandboxApi, response: httpx.Response, responses: dict[str, list[str]]
) -> httpx.Response:
    body = {"RequestId": response.json()["RequestId"], "SecurityResponses": responses}
    return flinks.authorize(body)


def _complete(flinks: SandboxApi, response: httpx.Response) -> httpx.Response:
    while response.status_code == 203:
        response = _answer(flinks, response, right_responses(_challenge(response)))
    return response


@pytest.mark.parametrize("username", list(FIRST_CHALLENGES))
def test_each_type_is_sent_in_flinks_shape_and_can_be_answered(
    flinks: SandboxApi, username: str
) -> None:
    kind, prompt, choices = FIRST_CHALLENGES[username]

    response = flinks.live(username, Save=True)
    challenge = _challenge(response)
    done = _complete(flinks, response)

    expected = {"Type": kind, "Prompt": prompt, "Iterables": choices}
    assert challenge == expected
    assert list(challenge) == list(expected)  # Type, Prompt, Iterables, in Flinks' order
    assert done.status_code == 200, done.text
    assert done.json()["Login"]["Username"] == username
    assert done.json()["RequestId"] == response.json()["RequestId"]


def test_image_selection_sends_base64_pngs_and_the_answer_is_the_chosen_one(
    flinks: SandboxApi,
) -> None:
    response = flinks.live("test_mfa_image")
    challenge = _challenge(response)

    assert (challenge["Type"], challenge["Prompt"]) == (
        "ImageSelection",
        "Select your personal image",
    )
    images = challenge["Iterables"]
    assert len(images) == 4
    assert all(len(png_rows(image)) == 32 for image in images)  # real 32x32 PNGs
    assert [is_triangle(image) for image in images].count(True) == 1
    triangle = next(image for image in images if is_triangle(image))
    as_data_url = _answer(
        flinks, response, {challenge["Prompt"]: [f"data:image/png;base64,{triangle}"]}
    )
    assert as_data_url.status_code == 401  # the string itself, as offered, not a data: URL
    again = flinks.live("test_mfa_image")
    assert _answer(flinks, again, {challenge["Prompt"]: [triangle]}).status_code == 200


@pytest.mark.parametrize(
    ("username", "answers"),
    [
        ("test_mfa_question_choices", ["Ottawa"]),  # not offered
        ("test_mfa_question_choices", ["montreal"]),  # offered as "Montreal", exactly
        ("test_mfa_question_choices", ["Toronto"]),  # offered, wrong
        ("test_mfa_multiple_choice", ["Flinks Capital", "Maple Trust"]),  # one answer only
        ("test_mfa_multiple_choice", ["Royal Bank"]),
        ("test_mfa_multiple_answers", ["Montreal"]),  # a part of the set
        ("test_mfa_multiple_answers", ["Montreal", "Quebec City", "Paris"]),  # more
        ("test_mfa_multiple_answers", ["Montreal", "Quebec City", "Ottawa"]),  # not offered
        ("test_mfa_multiple_answers", ["Montreal", "Montreal"]),
        ("test_mfa_multiple_answers", []),
    ],
)
def test_choice_answers_must_be_the_right_offered_ones(
    flinks: SandboxApi, username: str, answers: list[str]
) -> None:
    response = flinks.live(username)
    prompt = _challenge(response)["Prompt"]

    refused = _answer(flinks, response, {prompt: answers})

    assert refused.status_code == 401
    assert refused.json()["FlinksCode"] == "INVALID_SECURITY_RESPONSE"


def test_a_choice_not_offered_is_named_in_the_message(flinks: SandboxApi) -> None:
    response = flinks.live("test_mfa_multiple_choice")
    prompt = _challenge(response)["Prompt"]

    not_offered = _answer(flinks, response, {prompt: ["Royal Bank"]}).json()["Message"]
    response = flinks.live("test_mfa_multiple_choice")
    offered = _answer(flinks, response, {prompt: ["Maple Trust"]}).json()["Message"]

    assert "not one of the choices offered" in not_offered
    assert "not one of the choices offered" not in offered


def test_multiple_answers_in_any_order(flinks: SandboxApi) -> None:
    response = flinks.live("test_mfa_multiple_answers")
    prompt = _challenge(response)["Prompt"]

    assert _answer(flinks, response, {prompt: ["Quebec City", "Montreal"]}).status_code == 200


@pytest.mark.parametrize(
    ("method", "prompt"),
    [
        ("Text", f"Enter the security code sent by text message to {PHONE}"),
        ("Call", f"Enter the security code you heard on the call to {PHONE}"),
    ],
)
def test_text_or_call_is_keyed_by_the_number_then_asks_for_the_code(
    flinks: SandboxApi, method: str, prompt: str
) -> None:
    response = flinks.live("test_mfa_text_or_call")

    code = _answer(flinks, response, {PHONE: [method]})
    wrong_code = _answer(flinks, code, {prompt: ["000000"]})
    response = flinks.live("test_mfa_text_or_call")
    code = _answer(flinks, response, {PHONE: [method]})
    done = _answer(flinks, code, {prompt: [SECURITY_CODE]})

    assert _challenge(code) == {"Type": "QuestionAndAnswer", "Prompt": prompt}
    assert code.json()["RequestId"] == response.json()["RequestId"]
    assert wrong_code.json()["FlinksCode"] == "INVALID_SECURITY_RESPONSE"
    assert done.status_code == 200


@pytest.mark.parametrize(
    ("responses", "code"),
    [
        # Keyed by the prompt, as for the other types: not how TextOrCall is answered.
        ({"How would you like to receive your one-time security code?": ["Text"]}, None),
        ({"•••-•••-9999": ["Text"]}, None),  # a number that was not offered
        ({PHONE: ["Email"]}, "INVALID_SECURITY_RESPONSE"),
        ({PHONE: ["Text", "Call"]}, "INVALID_SECURITY_RESPONSE"),
    ],
)
def test_text_or_call_refuses_other_answers(
    flinks: SandboxApi, responses: dict[str, list[str]], code: str | None
) -> None:
    response = flinks.live("test_mfa_text_or_call")

    refused = _answer(flinks, response, responses)

    assert refused.status_code == 401
    assert refused.json()["FlinksCode"] == (code or "UNKNOWN_CHALLENGE_KEY")


def test_french_prompts_for_the_extension_users(flinks: SandboxApi) -> None:
    response = flinks.live("test_mfa_multiple_choice", Language="fr")

    assert _challenge(response)["Prompt"] == (
        "Auprès de quelle banque avez-vous ouvert votre premier compte?"
    )
    assert _complete(flinks, response).status_code == 200


def test_question_order_is_per_sign_in_and_the_same_for_every_sign_in(
    http: httpx.Client,
) -> None:
    with running_sandbox(clean_settings(mfa_rounds=3)) as sandbox:
        client = SandboxApi(sandbox, http)
        first, second = client.live("Greatday"), client.live("Greatday")
        orders: list[list[str]] = [[], []]
        responses = [first, second]
        # Interleaved: each sign-in goes through its own sequence, whatever the other does.
        while any(r.status_code == 203 for r in responses):
            for index, response in enumerate(responses):
                if response.status_code == 203:
                    challenge = _challenge(response)
                    orders[index].append(challenge["Prompt"])
                    responses[index] = _answer(client, response, right_responses(challenge))

        assert [r.status_code for r in responses] == [200, 200]
        assert (
            orders[0]
            == orders[1]
            == [
                "What city were you born in?",
                "What is the best country on earth?",
                "What shape do people like most?",
            ]
        )


def test_three_rounds_of_multiple_choice(http: httpx.Client) -> None:
    with running_sandbox(clean_settings(mfa_rounds=3)) as sandbox:
        client = SandboxApi(sandbox, http)
        response = client.live("test_mfa_multiple_choice")
        prompts = []
        while response.status_code == 203:
            challenge = _challenge(response)
            prompts.append(challenge["Prompt"])
            response = _answer(client, response, right_responses(challenge))

    assert response.status_code == 200
    assert prompts == [
        "Which bank did you open your first account with?",
        "What is your lucky number?",
        "In which city is your branch?",
    ]
