"""MFA answers: checked against the challenges a flow waits on, per type, before anything is
sent to Flinks, then shaped as Flinks' `SecurityResponses`.

The API takes `{responses: {"<prompt>": [answers]}}` for every type, keyed by the prompt the
flow status showed:

- `QuestionAndAnswer` without choices: exactly one non-empty answer (free text);
- `QuestionAndAnswer` with choices, `MultipleChoice`, `ImageSelection`: exactly one of the
  offered choices (for an image, the base64 string Flinks sent);
- `MultipleChoiceMultipleAnswers`: one or more different choices, each one of those offered;
- `TextOrCall`: `[<one of the offered phone numbers>, "Text" | "Call"]`, which Flinks takes
  keyed by the chosen number (`{"<number>": ["Text"]}`); the code question that follows is an
  ordinary `QuestionAndAnswer`.

A type not known here is answered like the closest known one: one of its choices if it has
some, else one non-empty answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from app.errors import ValidationFailed
from app.flows.records import Challenge

QUESTION_AND_ANSWER = "QuestionAndAnswer"
MULTIPLE_CHOICE = "MultipleChoice"
MULTIPLE_ANSWERS = "MultipleChoiceMultipleAnswers"
IMAGE_SELECTION = "ImageSelection"
TEXT_OR_CALL = "TextOrCall"
TEXT_OR_CALL_METHODS = ("Text", "Call")


def security_responses(
    challenges: Sequence[Challenge], responses: Mapping[str, Sequence[str]]
) -> dict[str, list[str]]:
    """Flinks' SecurityResponses for these answers; ValidationFailed (422) naming the prompt of
    the first answer that does not fit its challenge."""
    if set(responses) != {challenge.prompt for challenge in challenges}:
        raise ValidationFailed("Answer every challenge of this flow, by its prompt.")
    security: dict[str, list[str]] = {}
    for challenge in challenges:
        key, answers = _checked(challenge, list(responses[challenge.prompt]))
        security[key] = answers
    return security


def _checked(challenge: Challenge, given: list[str]) -> tuple[str, list[str]]:
    offered = challenge.choices
    if challenge.type == TEXT_OR_CALL:
        if len(given) == 2 and given[0] in offered and given[1] in TEXT_OR_CALL_METHODS:
            return given[0], [given[1]]
        raise _invalid(challenge, 'must be [one of the offered numbers, "Text" or "Call"]')
    if challenge.type == MULTIPLE_ANSWERS:
        if given and len(set(given)) == len(given) and all(a in offered for a in given):
            return challenge.prompt, given
        raise _invalid(challenge, "must be one or more different choices, each one offered")
    if offered or challenge.type in (MULTIPLE_CHOICE, IMAGE_SELECTION):
        if len(given) == 1 and given[0] in offered:
            return challenge.prompt, given
        raise _invalid(challenge, "must be exactly one of the offered choices")
    if len(given) == 1 and given[0].strip():
        return challenge.prompt, given
    raise _invalid(challenge, "must be exactly one non-empty answer")


def _invalid(challenge: Challenge, rule: str) -> ValidationFailed:
    # The prompt is the bank's question, shown to this owner already; the answers are not
    # repeated (an image choice is a long base64 string, and an answer may be a secret).
    return ValidationFailed(f'The answer to "{challenge.prompt}" {rule}.')
