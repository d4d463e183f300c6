"""What a FlinksCode, or an OAuth callback `error`, means for our API and for the end user.

Codes come from flinks-contract.md section 8. Each maps to an `Outcome` whose `code` is the
FlinksCode in lower case (`flinks_error` for anything unknown) and whose message is written
here, never copied from Flinks' body.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum, StrEnum
from types import MappingProxyType
from typing import Final

# FlinksCodes are upper-case words ("BANK MAINTENANCE_RETRY_LATER" has a space). Anything else
# in that field is not a code, and is dropped rather than passed on to our API or logs.
_FLINKS_CODE_SHAPE: Final = re.compile(r"[A-Z][A-Z0-9_ ]{0,63}")


class OutcomeKind(StrEnum):
    SUCCESS = "success"
    PENDING = "pending"
    FAILURE = "failure"


@dataclass(frozen=True, slots=True)
class Outcome:
    """`can_retry`: a new attempt (start again) may succeed. `can_retry_mfa`: the same
    challenge may be answered again within the same Flinks session."""

    code: str
    message: str
    kind: OutcomeKind = OutcomeKind.FAILURE
    can_retry: bool = False
    can_retry_mfa: bool = False


class _Retry(Enum):
    NO = (False, False)
    START_AGAIN = (True, False)
    ANSWER_AGAIN = (True, True)


def _failure(code: str, retry: _Retry, message: str) -> Outcome:
    can_retry, can_retry_mfa = retry.value
    return Outcome(code, message, OutcomeKind.FAILURE, can_retry, can_retry_mfa)


_PENDING: Final = "Your bank is still processing the request. Please check back shortly."
_CONNECTED: Final = "Your account is connected."

_FAILURES: Final[Mapping[str, tuple[_Retry, str]]] = {
    "SESSION_NONEXISTENT": (
        _Retry.START_AGAIN,
        "This connection session has expired. Please start again.",
    ),
    "CARD_IN_USE": (
        _Retry.START_AGAIN,
        "Your account is still being processed. Please try again in a few minutes.",
    ),
    "ACCESS_DENIED": (_Retry.START_AGAIN, "Access was denied. Please start again."),
    "INVALID_LOGIN": (
        _Retry.START_AGAIN,
        "The username or password is incorrect. Please try again.",
    ),
    # Missing or malformed input from us, not from the user: trying again will not help.
    "INVALID_REQUEST": (_Retry.NO, "The connection request could not be processed."),
    "INVALID_USERNAME": (
        _Retry.START_AGAIN,
        "Your bank did not recognise the username. Please try again.",
    ),
    "INVALID_PASSWORD": (
        _Retry.START_AGAIN,
        "Your bank did not accept the password. Please try again.",
    ),
    "INVALID_SECURITY_RESPONSE": (
        _Retry.ANSWER_AGAIN,
        "The answer to the security question was not accepted. Please try again.",
    ),
    "INVALID_SECURITY_RESPONSE_NO_RETRY": (
        _Retry.START_AGAIN,
        "The security answers were not accepted. Please start again.",
    ),
    "QUESTION_NOT_FOUND": (
        _Retry.START_AGAIN,
        "Your bank asked a security question we have no answer for. Please connect again.",
    ),
    "RETRY_LATER": (_Retry.START_AGAIN, "We could not reach your bank. Please try again later."),
    "TOO_MANY_REQUESTS": (
        _Retry.START_AGAIN,
        "Too many attempts. Please wait a few minutes and try again.",
    ),
    # The answers were keyed to a prompt that was not asked; the challenge itself still stands.
    "UNKNOWN_CHALLENGE_KEY": (
        _Retry.ANSWER_AGAIN,
        "The answer did not match the security question asked. Please answer it again.",
    ),
    "UNAUTHORIZED": (_Retry.START_AGAIN, "Your bank did not authorise access to the account."),
    "NEW_ACCOUNT": (
        _Retry.START_AGAIN,
        "Your bank needs you to sign in to online banking first. Please do that, then try again.",
    ),
    "DISABLED_LOGIN": (_Retry.NO, "Your bank has disabled online access for this account."),
    "DISABLED_INSTITUTION": (
        _Retry.START_AGAIN,
        "This bank is not available right now. Please try again later.",
    ),
    "AGGREGATION_ERROR": (
        _Retry.START_AGAIN,
        "Something went wrong while reading your account. Please try again later.",
    ),
    "SESSION_EXPIRED": (_Retry.START_AGAIN, "The session expired. Please start again."),
    "CONCURRENT_SESSION": (
        _Retry.START_AGAIN,
        "Another connection to this account is in progress. Please wait and try again.",
    ),
    "ALREADY_AUTHORIZED": (_Retry.NO, "This account is already connected."),
    "SECURITYRESPONSES_INCOMPLETE": (
        _Retry.ANSWER_AGAIN,
        "Please answer every security question.",
    ),
    "NO_TRANSACTION": (_Retry.NO, "No transactions were found for this account."),
    "METHOD_NOT_AVAILABLE": (_Retry.NO, "This option is not available for your bank."),
    # Flinks does not know our own customer id: a configuration problem on our side.
    "CUSTOMER_NOT_FOUND": (_Retry.NO, "The service is not available right now."),
    "NO_BROWSER_AVAILABLE": (
        _Retry.START_AGAIN,
        "The service is busy. Please try again in a few minutes.",
    ),
}

FLINKS_CODE_OUTCOMES: Final[Mapping[str, Outcome]] = MappingProxyType(
    {
        "OK": Outcome("ok", _CONNECTED, OutcomeKind.SUCCESS),
        "CREATED": Outcome("created", _CONNECTED, OutcomeKind.SUCCESS),
        "OPERATION_PENDING": Outcome("operation_pending", _PENDING, OutcomeKind.PENDING),
        "OPERATION_DISPATCHED": Outcome("operation_dispatched", _PENDING, OutcomeKind.PENDING),
    }
    | {code: _failure(code.lower(), retry, message) for code, (retry, message) in _FAILURES.items()}
)

FLINKS_ERROR: Final = _failure(
    "flinks_error",
    _Retry.START_AGAIN,
    "Something went wrong while connecting to your bank. Please try again.",
)


def clean_flinks_code(value: object) -> str | None:
    """The value if it is shaped like a FlinksCode, else None."""
    if isinstance(value, str) and _FLINKS_CODE_SHAPE.fullmatch(value):
        return value
    return None


def outcome_for_flinks_code(code: str | None) -> Outcome:
    """The outcome of any FlinksCode; `FLINKS_ERROR` for None or an unknown code."""
    if code is None:
        return FLINKS_ERROR
    return FLINKS_CODE_OUTCOMES.get(code, FLINKS_ERROR)


def failure_for_flinks_code(code: str | None) -> Outcome:
    """The outcome of a refused call: a success or pending code on an error status is nonsense."""
    outcome = outcome_for_flinks_code(code)
    return outcome if outcome.kind is OutcomeKind.FAILURE else FLINKS_ERROR


# OAuth callback `?error=` values (RFC 6749 section 4.1.2.1). Flinks documents none of its own,
# so the standard ones are recognised and everything else is the generic `oauth_error`.
OAUTH_ERROR: Final = _failure(
    "oauth_error",
    _Retry.START_AGAIN,
    "Your bank could not complete the connection. Please try again.",
)

OAUTH_ERROR_OUTCOMES: Final[Mapping[str, Outcome]] = MappingProxyType(
    {
        "access_denied": _failure(
            "oauth_access_denied", _Retry.START_AGAIN, "Access was not granted at your bank."
        ),
        "invalid_request": _failure(
            "oauth_invalid_request", _Retry.NO, "The connection request could not be processed."
        ),
        "server_error": _failure(
            "oauth_server_error",
            _Retry.START_AGAIN,
            "Your bank could not complete the connection. Please try again.",
        ),
        "temporarily_unavailable": _failure(
            "oauth_temporarily_unavailable",
            _Retry.START_AGAIN,
            "Your bank is temporarily unavailable. Please try again later.",
        ),
    }
)


def outcome_for_oauth_error(error: str | None) -> Outcome:
    """One of `OAUTH_ERROR_OUTCOMES`, or `OAUTH_ERROR` for anything else (matched exactly)."""
    if error is None:
        return OAUTH_ERROR
    return OAUTH_ERROR_OUTCOMES.get(error, OAUTH_ERROR)
