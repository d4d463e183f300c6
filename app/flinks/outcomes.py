"""What the client's methods return. Identifiers, tokens, usernames, account numbers and
transaction descriptions stay out of every repr."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
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


@dataclass(frozen=True, slots=True)
class FlinksTransaction:
    """One transaction as Flinks reports it: amounts exactly as sent (JSON numbers are read as
    `Decimal`, never through a float). A debit and a credit are both positive; either may be
    None. `balance` is the account's running balance after it, when Flinks gives one."""

    transaction_id: str
    date: date
    description: str = field(repr=False)
    debit: Decimal | None
    credit: Decimal | None
    balance: Decimal | None


@dataclass(frozen=True, slots=True)
class FlinksBalance:
    """`current`: posted; `available`: posted and authorized; `limit`: a credit limit. Any may
    be None (Flinks sends null, or the call asked for no balance)."""

    current: Decimal | None
    available: Decimal | None
    limit: Decimal | None


@dataclass(frozen=True, slots=True)
class FlinksAccount:
    """One account of a login. Holder details (name, address, email, phone) are dropped by the
    client and never reach this type.

    `account_number` is the full number (GetAccountsDetail asks for the account identity): never
    log or store it, keep a mask. `last_four` is Flinks' `LastFourDigits`, often null (the
    last four characters of `account_number` then serve). `transactions` are newest first, as
    Flinks orders them; empty for a summary or a detail without transactions."""

    account_id: str
    title: str | None
    category: str | None
    type: str | None
    currency: str | None
    account_number: str | None = field(repr=False)
    last_four: str | None = field(repr=False)
    balance: FlinksBalance
    transactions: tuple[FlinksTransaction, ...] = field(default=(), repr=False)


@dataclass(frozen=True, slots=True)
class AccountsReady:
    """200 from GetAccountsDetail, GetAccountsSummary or their Async endpoints."""

    request_id: str = field(repr=False)
    accounts: tuple[FlinksAccount, ...]


@dataclass(frozen=True, slots=True)
class AccountsPending:
    """202 OPERATION_PENDING: poll the Async endpoint with request_id, at most every 10 s."""

    request_id: str = field(repr=False)


AccountsOutcome: TypeAlias = AccountsReady | AccountsPending
