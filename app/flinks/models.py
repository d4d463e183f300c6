"""Flinks request and response payloads, with Flinks' own PascalCase field names.

Responses ignore fields we do not use and tolerate missing optional ones. Identifiers and
secrets are left out of every repr, and validation errors never quote their input (pydantic's
message would otherwise carry a token or RequestId into a traceback).
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

# The languages Flinks' API and Connect take (the client's own: it imports nothing of the app's;
# the domain's `app.flows.records.Language` must fit in it).
FlinksLanguage = Literal["en", "fr"]


class _Response(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    def to_json(self) -> dict[str, Any]:
        """The body to send: every field that is set, in declaration order, without nulls."""
        return self.model_dump(mode="json", exclude_none=True)


class AuthorizeRequest(_Request):
    LoginId: str | None = Field(default=None, min_length=1, repr=False)
    MostRecentCached: bool | None = None
    Save: bool | None = None
    Language: FlinksLanguage | None = None
    Tag: str | None = None
    RequestId: str | None = Field(default=None, min_length=1, repr=False)
    SecurityResponses: dict[str, list[str]] | None = Field(default=None, repr=False)


class AccountsSummaryRequest(_Request):
    RequestId: str = Field(min_length=1, repr=False)


class AccountsDetailRequest(_Request):
    """GetAccountsDetail's options (contract 6.2): account identity and balances always, the
    transactions of the last 90 or 365 days when asked for."""

    RequestId: str = Field(min_length=1, repr=False)
    WithAccountIdentity: bool
    WithBalance: bool
    WithTransactions: bool
    DaysOfTransactions: Literal["Days90", "Days365"]


class Link(_Response):
    rel: str | None = None
    href: str | None = None


class TokenResponse(_Response):
    """200 from /GenerateAuthorizeToken."""

    HttpStatusCode: int | None = None
    Token: SecretStr = Field(min_length=1)


class LoginInfo(_Response):
    Id: str | None = Field(default=None, repr=False)
    Username: str | None = Field(default=None, repr=False)
    IsScheduledRefresh: bool | None = None
    # UTC, without an offset ("2026-01-21T20:47:47.145999"); kept as Flinks wrote it.
    LastRefresh: str | None = None
    Type: str | None = None


class AuthorizeSuccess(_Response):
    """200 from /Authorize: the session is open."""

    HttpStatusCode: int | None = None
    Links: list[Link] = []
    InstitutionName: str | None = None
    Login: LoginInfo | None = None
    InstitutionId: int | None = None
    Institution: str | None = None
    RequestId: str = Field(min_length=1, repr=False)
    Tag: str | None = None


class SecurityChallenge(_Response):
    """One MFA challenge. `Iterables` are its choices (public integrations, contract 12.1 #1):
    answers to pick from, base64 PNGs for `ImageSelection`, masked phone numbers for
    `TextOrCall`."""

    Type: str | None = None
    Prompt: str = Field(min_length=1)
    Iterables: list[str] | None = Field(default=None, repr=False)


class AuthorizeMfaRequired(_Response):
    """203 from /Authorize (or a 401 that asks a new question after a wrong answer): answer the
    challenges with the same RequestId."""

    HttpStatusCode: int | None = None
    Links: list[Link] = []
    SecurityChallenges: list[SecurityChallenge] = Field(min_length=1)
    Institution: str | None = None
    RequestId: str = Field(min_length=1, repr=False)


class FlinksStatusResponse(_Response):
    """202 (pending, dispatched) and error bodies."""

    HttpStatusCode: int | None = None
    Message: str | None = Field(default=None, repr=False)
    FlinksCode: str | None = None
    Links: list[Link] = []
    RequestId: str | None = Field(default=None, repr=False)
    Institution: str | None = None


# --- GetAccountsDetail / GetAccountsSummary -------------------------------------------------
# Types per Flinks' "Data types in GetAccountsDetail" (contract 6.2): strings and numbers, each
# of them possibly null. The client decodes JSON numbers as Decimal, so amounts keep every
# digit Flinks sent. An amount is bounded (32 significant digits, exponent included): a number
# like 1e999999 would be valid JSON, and formatting it later would not end.
Amount = Annotated[Decimal, Field(allow_inf_nan=False, max_digits=32)]
# Flinks' examples write "2025-01-31"; older integrations read "2025/01/31" and timestamps.
_DATE: Final = re.compile(r"(\d{4})[-/](\d{2})[-/](\d{2})(?:[T ][0-9:.]*(?:Z|[+-]\d{2}:?\d{2})?)?")


class _DataResponse(_Response):
    # A number where a string is expected (an account number sent as a JSON number) is read as
    # its text rather than refused.
    model_config = ConfigDict(coerce_numbers_to_str=True)


class TransactionPayload(_DataResponse):
    Id: str | None = Field(default=None, repr=False)
    Date: date | None = None
    Description: str | None = Field(default=None, repr=False)
    Debit: Amount | None = None
    Credit: Amount | None = None
    Balance: Amount | None = None

    @field_validator("Date", mode="before")
    @classmethod
    def _flinks_date(cls, value: object) -> object:
        """The calendar date Flinks wrote, whatever time may follow it; anything else that is
        not a date fails the response (a format we do not know is not guessed at)."""
        if not isinstance(value, str):
            return value
        match = _DATE.fullmatch(value.strip())
        if match is None:
            raise ValueError("not a date")
        year, month, day = (int(part) for part in match.groups())
        return date(year, month, day)


class BalancePayload(_DataResponse):
    Available: Amount | None = None
    Current: Amount | None = None
    Limit: Amount | None = None


class AccountPayload(_DataResponse):
    """One account. Holder (name, address, email, phone), TransitNumber, InstitutionNumber and
    the eligibility ratios are not read: what a model does not declare never leaves it."""

    Id: str | None = None
    Title: str | None = None
    Category: str | None = None
    Type: str | None = None
    Currency: str | None = None
    AccountNumber: str | None = Field(default=None, repr=False)
    LastFourDigits: str | None = Field(default=None, repr=False)
    Balance: BalancePayload | None = None
    Transactions: list[TransactionPayload] | None = Field(default=None, repr=False)


class AccountsResponse(_DataResponse):
    """200 from GetAccountsDetail, GetAccountsSummary and their Async endpoints."""

    HttpStatusCode: int | None = None
    Accounts: list[AccountPayload] | None = None
    RequestId: str | None = Field(default=None, repr=False)
    Institution: str | None = None
