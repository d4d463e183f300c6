"""What the client's methods return. Identifiers, tokens and usernames stay out of every repr."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeAlias

from pydantic import SecretStr

from app.flinks.codes import Outcome


@dataclass(frozen=True, slots=True)
class AuthorizeToken:
    """Single use; Flinks lets it live 30 minutes (15 on one page: contract section 9)."""

    value: SecretStr
    minted_at: datetime


@dataclass(frozen=True, slots=True)
class FlinksChallenge:
    """An MFA question as Flinks sent it (its type may be missing); the domain keeps its own.

    `choices` are Flinks' `Iterables`, in order: the answers to pick from, the base64 PNGs of an
    `ImageSelection`, the masked phone numbers of a `TextOrCall`; empty when Flinks sent none.
    """

    type: str | None
    prompt: str
    choices: tuple[str, ...] = field(default=(), repr=False)


@dataclass(frozen=True, slots=True)
class Connected:
    """200: the session is open; data endpoints take `request_id`."""

    login_id: str = field(repr=False)
    request_id: str = field(repr=False)
    institution: str | None
    username: str | None = field(repr=False)
    is_scheduled_refresh: bool | None


@dataclass(frozen=True, slots=True)
class MfaRequired:
    """203: answer with `FlinksClient.answer_mfa(token=token, request_id=request_id, ...)`.

    `token` is the authorize token that produced this challenge (the legacy docs want the same
    one back; the client falls back to a fresh one if Flinks refuses it), or None when none did
    (a 203 read from AuthorizeAsync). `rejected`: the answer just sent was wrong, and Flinks asks
    these new challenges instead (a 401 INVALID_SECURITY_RESPONSE carrying them).
    """

    request_id: str = field(repr=False)
    challenges: tuple[FlinksChallenge, ...]
    institution: str | None
    token: SecretStr | None = field(repr=False)
    rejected: bool = False


@dataclass(frozen=True, slots=True)
class Pending:
    """202: Flinks goes on in the background (OPERATION_PENDING or OPERATION_DISPATCHED)."""

    request_id: str | None = field(repr=False)
    flinks_code: str


@dataclass(frozen=True, slots=True)
class Failed:
    """Flinks refused the login or the answer; `outcome` says what to tell the user."""

    outcome: Outcome
    flinks_code: str | None
    http_status: int


AuthorizeOutcome: TypeAlias = Connected | MfaRequired | Pending | Failed
