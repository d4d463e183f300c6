"""Flinks' MFA challenge types, in the shape Flinks sends them, and how each answer is checked.

A 203 carries ``SecurityChallenges: [{Type, Prompt, Iterables?}]`` and the answer comes back as
``SecurityResponses: {key: [answers]}``. The types and the use of ``Iterables`` follow the public
integrations cited in the contract (section 12.1 #1): ``QuestionAndAnswer`` (free text, or one of
``Iterables`` when there are some), ``MultipleChoice`` (one of ``Iterables``),
``MultipleChoiceMultipleAnswers`` (several of ``Iterables``), ``ImageSelection`` (``Iterables``
are base64 PNGs, the answer is the chosen one) and ``TextOrCall`` (``Iterables`` are masked phone
numbers; the answer is keyed by the chosen number and says ``Text`` or ``Call``, then a
QuestionAndAnswer asks for the code that was sent).
"""

from __future__ import annotations

import enum
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from app.sandbox import images

QUESTION_AND_ANSWER = "QuestionAndAnswer"
MULTIPLE_CHOICE = "MultipleChoice"
MULTIPLE_ANSWERS = "MultipleChoiceMultipleAnswers"
IMAGE_SELECTION = "ImageSelection"
TEXT_OR_CALL = "TextOrCall"
TEXT_OR_CALL_METHODS = ("Text", "Call")
SECURITY_CODE = "123456"


def fold(text: str) -> str:
    """Case-, accent- and surrounding-space-insensitive form ("Montréal" == "montreal")."""
    decomposed = unicodedata.normalize("NFKD", text.strip())
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


class Verdict(enum.Enum):
    RIGHT = "right"
    WRONG = "wrong"  # a wrong answer, or a choice that was not offered
    UNKEYED = "unkeyed"  # no response is keyed to this challenge


@dataclass(frozen=True, slots=True)
class Check:
    verdict: Verdict
    # A TextOrCall answered: the QuestionAndAnswer that asks for the code that was sent.
    followup: Challenge | None = None


@dataclass(frozen=True, slots=True)
class Challenge:
    type: str
    prompt_en: str
    prompt_fr: str
    answers: frozenset[str]
    choices: tuple[str, ...] = field(default=())

    def prompt(self, language: str) -> str:
        return self.prompt_fr if language == "fr" else self.prompt_en

    def wire(self, language: str) -> dict[str, Any]:
        """The challenge as it appears in ``SecurityChallenges``."""
        body: dict[str, Any] = {"Type": self.type, "Prompt": self.prompt(language)}
        if self.choices:
            body["Iterables"] = list(self.choices)
        return body

    def is_prompt(self, text: str) -> bool:
        folded = fold(text)
        return folded in (fold(self.prompt_en), fold(self.prompt_fr))

    def is_key(self, key: str) -> bool:
        """Whether a SecurityResponses key answers this challenge."""
        if self.type == TEXT_OR_CALL:
            return key.strip() in self.choices
        return self.is_prompt(key)

    def check(self, responses: Mapping[str, Any]) -> Check:
        keyed = [(str(k), v) for k, v in responses.items() if self.is_key(str(k))]
        if not keyed:
            return Check(Verdict.UNKEYED)
        key, value = keyed[0]
        given = _answers(value)
        if self.type == TEXT_OR_CALL:
            if len(given) != 1 or given[0] not in TEXT_OR_CALL_METHODS:
                return Check(Verdict.WRONG)
            return Check(Verdict.RIGHT, followup=code_challenge(key.strip(), given[0]))
        if not self.choices:  # free text
            right = len(given) >= 1 and any(fold(given[0]) == fold(a) for a in self.answers)
            return Check(Verdict.RIGHT if right else Verdict.WRONG)
        if not given or any(answer not in self.choices for answer in given):
            return Check(Verdict.WRONG)  # a choice must be one of the offered ones
        if self.type == MULTIPLE_ANSWERS:
            right = len(set(given)) == len(given) and set(given) == self.answers
        else:
            right = len(given) == 1 and given[0] in self.answers
        return Check(Verdict.RIGHT if right else Verdict.WRONG)


def _answers(value: object) -> list[str]:
    """The answers given: Flinks documents a list; a bare string is read as a list of one."""
    if isinstance(value, str):
        return [value.strip()]
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return [item.strip() for item in value]
    return []


def code_challenge(phone: str, method: str) -> Challenge:
    """The QuestionAndAnswer that follows a TextOrCall: the code sent to the chosen number."""
    if method == "Call":
        en, fr = (
            f"Enter the security code you heard on the call to {phone}",
            (f"Entrez le code de sécurité entendu lors de l'appel au {phone}"),
        )
    else:
        en, fr = (
            f"Enter the security code sent by text message to {phone}",
            (f"Entrez le code de sécurité envoyé par texto au {phone}"),
        )
    return Challenge(QUESTION_AND_ANSWER, en, fr, frozenset({SECURITY_CODE}))


def _qa(en: str, fr: str, answer: str, choices: tuple[str, ...] = ()) -> Challenge:
    return Challenge(QUESTION_AND_ANSWER, en, fr, frozenset({answer}), choices)


CITY_EN, CITY_FR = "What city were you born in?", "Dans quelle ville êtes-vous né?"
COUNTRY_EN, COUNTRY_FR = "What is the best country on earth?", "Quel est le meilleur pays au monde?"
SHAPE_EN, SHAPE_FR = "What shape do people like most?", "Quelle forme les gens préfèrent-ils?"

# Flinks Capital's three documented questions (Greatday), asked in this order at every sign-in.
QUESTIONS: tuple[Challenge, ...] = (
    _qa(CITY_EN, CITY_FR, "Montreal"),
    _qa(COUNTRY_EN, COUNTRY_FR, "Canada"),
    _qa(SHAPE_EN, SHAPE_FR, "Triangle"),
)

# Sandbox extensions: the same questions offered as a list of choices.
QUESTIONS_WITH_CHOICES: tuple[Challenge, ...] = (
    _qa(CITY_EN, CITY_FR, "Montreal", ("Toronto", "Montreal", "Vancouver", "Calgary")),
    _qa(COUNTRY_EN, COUNTRY_FR, "Canada", ("France", "Canada", "Japan", "Brazil")),
    _qa(SHAPE_EN, SHAPE_FR, "Triangle", ("Circle", "Square", "Triangle", "Star")),
)

MULTIPLE_CHOICE_QUESTIONS: tuple[Challenge, ...] = (
    Challenge(
        MULTIPLE_CHOICE,
        "Which bank did you open your first account with?",
        "Auprès de quelle banque avez-vous ouvert votre premier compte?",
        frozenset({"Flinks Capital"}),
        ("Maple Trust", "Flinks Capital", "Northern Savings", "Harbour Credit"),
    ),
    Challenge(
        MULTIPLE_CHOICE,
        "What is your lucky number?",
        "Quel est votre chiffre porte-bonheur?",
        frozenset({"7"}),
        ("3", "7", "13", "42"),
    ),
    Challenge(
        MULTIPLE_CHOICE,
        "In which city is your branch?",
        "Dans quelle ville se trouve votre succursale?",
        frozenset({"Halifax"}),
        ("Montreal", "Toronto", "Vancouver", "Halifax"),
    ),
)

MULTIPLE_ANSWER_QUESTIONS: tuple[Challenge, ...] = (
    Challenge(
        MULTIPLE_ANSWERS,
        "Which of these cities have you lived in?",
        "Dans lesquelles de ces villes avez-vous habité?",
        frozenset({"Montreal", "Quebec City"}),
        ("Montreal", "Toronto", "Quebec City", "Paris", "Tokyo"),
    ),
    Challenge(
        MULTIPLE_ANSWERS,
        "Which of these are your lucky numbers?",
        "Lesquels de ces chiffres vous portent bonheur?",
        frozenset({"7", "42"}),
        ("3", "7", "13", "42"),
    ),
    Challenge(
        MULTIPLE_ANSWERS,
        "Which of these shapes do you like?",
        "Lesquelles de ces formes aimez-vous?",
        frozenset({"Triangle", "Star"}),
        ("Circle", "Square", "Triangle", "Star"),
    ),
)

IMAGE_QUESTIONS: tuple[Challenge, ...] = (
    Challenge(
        IMAGE_SELECTION,
        "Select your personal image",
        "Sélectionnez votre image personnelle",
        frozenset({images.TRIANGLE}),
        (images.CIRCLE, images.SQUARE, images.TRIANGLE, images.DIAMOND),
    ),
)

PHONE_NUMBERS = ("•••-•••-4242", "•••-•••-1313")
TEXT_OR_CALL_QUESTIONS: tuple[Challenge, ...] = (
    Challenge(
        TEXT_OR_CALL,
        "How would you like to receive your one-time security code?",
        "Comment voulez-vous recevoir votre code de sécurité à usage unique?",
        frozenset(),
        PHONE_NUMBERS,
    ),
)
