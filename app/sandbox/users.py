"""The Flinks Capital test users (contract section 1.3), and the sandbox's own extensions."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from app.sandbox import challenges as c
from app.sandbox.challenges import Challenge

INSTITUTION = "FlinksCapital"
INSTITUTION_DISPLAY_NAME = "Flinks Capital"
INSTITUTION_ID = 14


class Behaviour(enum.Enum):
    """What a live authorization of the user ends with once credentials (and MFA) pass."""

    CONNECTED = "connected"
    DISABLED = "disabled"
    RETRY_LATER = "retry_later"
    DISPATCHED = "dispatched"  # 202 OPERATION_DISPATCHED at once (Flinks' test_dispatched)
    SLOW = "slow"  # the bank takes slow_bank_seconds, then 202 OPERATION_DISPATCHED


@dataclass(frozen=True, slots=True)
class BankUser:
    username: str
    password: str
    behaviour: Behaviour
    # The challenges of a sign-in, asked in this order (cycled); empty: no MFA.
    challenges: tuple[Challenge, ...] = ()
    # Not one of Flinks' Toolbox users: a sandbox extension.
    extension: bool = False

    @property
    def mfa(self) -> bool:
        return bool(self.challenges)


PASSWORD = "Everyday"  # noqa: S105 - the documented test password

USERS: dict[str, BankUser] = {
    user.username.lower(): user
    for user in (
        BankUser("Greatday", PASSWORD, Behaviour.CONNECTED, c.QUESTIONS),
        BankUser("greatday_nomfa", PASSWORD, Behaviour.CONNECTED),
        BankUser("test_disabled_account", PASSWORD, Behaviour.DISABLED),
        BankUser("test_service_unavailable", PASSWORD, Behaviour.RETRY_LATER),
        BankUser("test_dispatched", PASSWORD, Behaviour.DISPATCHED),
        BankUser(
            "test_mfa_question_choices",
            PASSWORD,
            Behaviour.CONNECTED,
            c.QUESTIONS_WITH_CHOICES,
            extension=True,
        ),
        BankUser(
            "test_mfa_multiple_choice",
            PASSWORD,
            Behaviour.CONNECTED,
            c.MULTIPLE_CHOICE_QUESTIONS,
            extension=True,
        ),
        BankUser(
            "test_mfa_multiple_answers",
            PASSWORD,
            Behaviour.CONNECTED,
            c.MULTIPLE_ANSWER_QUESTIONS,
            extension=True,
        ),
        BankUser(
            "test_mfa_image", PASSWORD, Behaviour.CONNECTED, c.IMAGE_QUESTIONS, extension=True
        ),
        BankUser(
            "test_mfa_text_or_call",
            PASSWORD,
            Behaviour.CONNECTED,
            c.TEXT_OR_CALL_QUESTIONS,
            extension=True,
        ),
        BankUser("test_slow_bank", PASSWORD, Behaviour.SLOW, extension=True),
        BankUser("test_slow_bank_mfa", PASSWORD, Behaviour.SLOW, c.QUESTIONS, extension=True),
    )
}


def find_user(username: str) -> BankUser | None:
    return USERS.get(username.strip().lower())


def check_credentials(username: str, password: str) -> BankUser | None:
    """The user when the password matches; the docs' own example sends "everyday" in lower case."""
    user = find_user(username)
    if user is None or password.strip().lower() != user.password.lower():
        return None
    return user
