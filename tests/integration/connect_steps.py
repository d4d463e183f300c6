"""The Connect flow as tests drive it through the BFF's API, and the right answer to every
challenge the sandbox's users get, in the API's shape (keyed by prompt; TextOrCall as
`[number, "Text"]`)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.integration.conftest import ANSWERS
from tests.sandbox.mfa import CHOICE_ANSWERS, SECURITY_CODE, is_triangle

# The sandbox's MFA users, one per challenge type (app/sandbox/README.md).
MFA_USERS = (
    "Greatday",
    "test_mfa_question_choices",
    "test_mfa_multiple_choice",
    "test_mfa_multiple_answers",
    "test_mfa_image",
    "test_mfa_text_or_call",
)


async def start(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post("/v1/connect/sessions", json=body)
    assert response.status_code == 201, response.text
    started: dict[str, Any] = response.json()
    return started


async def complete(client: httpx.AsyncClient, flow_id: str, login_id: str) -> httpx.Response:
    return await client.post(
        f"/v1/connect/sessions/{flow_id}/complete",
        json={"login_id": login_id, "institution": "FlinksCapital"},
    )


async def status(client: httpx.AsyncClient, flow_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/flows/{flow_id}")
    assert response.status_code == 200, response.text
    flow: dict[str, Any] = response.json()
    return flow


async def answer(
    client: httpx.AsyncClient, flow_id: str, responses: dict[str, list[str]]
) -> httpx.Response:
    return await client.post(f"/v1/flows/{flow_id}/mfa", json={"responses": responses})


def right_answer(challenge: dict[str, Any]) -> list[str]:
    """The answer that passes one of the flow status' `mfa.challenges`."""
    kind, prompt, choices = challenge["type"], challenge["prompt"], challenge["choices"]
    if kind == "TextOrCall":
        return [choices[0], "Text"]
    if kind == "ImageSelection":
        return [next(image for image in choices if is_triangle(image))]
    if prompt.startswith("Enter the security code"):
        return [SECURITY_CODE]
    if choices:
        return CHOICE_ANSWERS[prompt]
    return ANSWERS[prompt]


def wrong_answer(challenge: dict[str, Any]) -> list[str]:
    """An answer of the right shape that the bank refuses (an offered choice, when offered)."""
    kind, choices = challenge["type"], challenge["choices"]
    right = right_answer(challenge)
    if kind == "TextOrCall":
        raise AssertionError("any number and method is right for TextOrCall")
    if kind == "MultipleChoiceMultipleAnswers":
        return [right[0]]
    wrong = [choice for choice in choices if choice not in right]
    return wrong[:1] or ["Atlantis"]


async def answer_until_connected(
    client: httpx.AsyncClient, flow_id: str, flow: dict[str, Any], *, rounds: int = 5
) -> dict[str, Any]:
    """Answers every challenge the flow shows, right, until it is no longer mfa_required."""
    for _ in range(rounds):
        if flow["status"] != "mfa_required":
            return flow
        responses = {c["prompt"]: right_answer(c) for c in flow["mfa"]["challenges"]}
        answered = await answer(client, flow_id, responses)
        assert answered.status_code == 200, answered.text
        flow = answered.json()
    return flow
