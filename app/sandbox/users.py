"""The Flinks Capital test users and security questions (contract section 1.3)."""

from __future__ import annotations

import enum
import unicodedata
from dataclasses import dataclass

INSTITUTION = "FlinksCapital"
INSTITUTION_DISPLAY_NAME = "Flinks Capital"
INSTITUTION_ID = 14
QUESTION_AND_ANSWER = "QuestionAndAnswer"


class Behaviour(enum.Enum):
    """What a live authorization of the user ends with once credentials (and MFA) pass."""

    CONNECTED = "connected"
    DISABLED = "disabled"
    RETRY_LATER = "retry_later"
    DISPATCHED = "dispatched"


@dataclass(frozen=True, slots=True)
class BankUser:
    username: str
    password: str
    mfa: bool
    behaviour: Behaviour


@dataclass(frozen=True, slots=True)
class SecurityQuestion:
    key: str
    prompt_en: str
    prompt_fr: str
    answer: str

    def prompt(self, language: str) -> str:
        return self.prompt_fr if language == "fr" else self.prompt_en

    def is_prompt(self, text: str) -> bool:
        folded = fold(text)
        return folded in (fold(self.prompt_en), fold(self.prompt_fr))

    def accepts(self, answer: str) -> bool:
        return fold(answer) == fold(self.answer)


PASSWORD = "Everyday"  # noqa: S105 - the documented test password

USERS: dict[str, BankUser] = {
    user.username.lower(): user
    for user in (
        BankUser("Greatday", PASSWORD, mfa=True, behaviour=Behaviour.CONNECTED),
        BankUser("greatday_nomfa", PASSWORD, mfa=False, behaviour=Behaviour.CONNECTED),
        BankUser("test_disabled_account", PASSWORD, mfa=False, behaviour=Behaviour.DISABLED),
        BankUser("test_service_unavailable", PASSWORD, mfa=False, behaviour=Behaviour.RETRY_LATER),
        BankUser("test_dispatched", PASSWORD, mfa=False, behaviour=Behaviour.DISPATCHED),
    )
}

QUESTIONS: tuple[SecurityQuestion, ...] = (
    SecurityQuestion(
        "city", "What city were you born in?", "Dans quelle ville êtes-vous né?", "Montreal"
    ),
    SecurityQuestion(
        "country",
        "What is the best country on earth?",
        "Quel est le meilleur pays au monde?",
        "Canada",
    ),
    SecurityQuestion(
        "shape",
        "What shape do people like most?",
        "Quelle forme les gens préfèrent-ils?",
        "Triangle",
    ),
)


def fold(text: str) -> str:
    """Case-, accent- and surrounding-space-insensitive form ("Montréal" == "montreal")."""
    decomposed = unicodedata.normalize("NFKD", text.strip())
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def find_user(username: str) -> BankUser | None:
    return USERS.get(username.strip().lower())


def check_credentials(username: str, password: str) -> BankUser | None:
    """The user when the password matches; the docs' own example sends "everyday" in lower case."""
    user = find_user(username)
    if user is None or password.strip().lower() != user.password.lower():
        return None
    return user
