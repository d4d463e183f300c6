"""Flinks wire formats: case-insensitive request bodies, response bodies, error bodies."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

from app.sandbox import data
from app.sandbox.state import Card
from app.sandbox.users import INSTITUTION, INSTITUTION_ID

JSON = dict[str, Any]

# Canonical names of the emulated BankingServices endpoints, by lower-cased path segment.
BANKING_ENDPOINTS = {
    name.lower(): name
    for name in (
        "GenerateAuthorizeToken",
        "Authorize",
        "GetAccountsSummary",
        "GetAccountsSummaryAsync",
        "GetAccountsDetail",
        "GetAccountsDetailAsync",
        "AuthorizeAsync",
        "DeleteCard",
        "SetScheduledRefresh",
    )
}
OAUTH_ENDPOINT = "OAuthAuthorize"

# Messages quoted by Flinks' documents (contract section 8).
MSG_BAD_AUTH_KEY = "You must provide a valid auth key"
MSG_BAD_TOKEN = "You must provide a valid authorize token"  # noqa: S105 - a message
MSG_BAD_CREDENTIALS = "The card number (username) or password provided is invalid"
MSG_BAD_LOGIN_ID = "The LoginId provided is either invalid or does not belong to the CustomerId"
MSG_NO_SESSION = "Inputs session id or card if were not found."
MSG_PENDING = "Your operation is still processing."
MSG_DISPATCHED = "Your operations had been dispatched to background process for long running jobs"
# Flinks documents only the meaning of these codes; the sandbox words its message from it.
MSG_BAD_API_KEY = "Authentication unsuccessful: no valid x-api-key was provided"
MSG_BAD_CUSTOMER = "Authentication unsuccessful: the CustomerId is not known on this instance"
MSG_DISABLED = "The account was deactivated by the financial institution"
MSG_RETRY_LATER = "Flinks could not open a connection with the financial institution"
MSG_BAD_ANSWER = "The MFA answer was different from what the bank expected"
MSG_NOT_A_CHOICE = "The MFA answer is not one of the choices offered"
MSG_UNKNOWN_PROMPT = "The MFA answer was keyed to the wrong prompt"
MSG_NOT_AUTHORIZED = "GetAccountsDetail was called before authorization"
MSG_CARD_IN_USE = "Operation requested while the account is still processing"

AUTHORIZE_LINKS = [{"rel": "Authorization", "href": "/Authorize", "example": None}]
DATA_LINKS = [
    {"rel": "AccountsDetail", "href": "/GetAccountsDetail", "example": None},
    {"rel": "AccountsSummary", "href": "/GetAccountsSummary", "example": None},
    {"rel": "Statements", "href": "/GetStatements", "example": None},
]


def detail_async_links(request_id: str) -> list[JSON]:
    """A data 202's Links, as a public fixture of a real answer has them (contract 12.1 #14)."""
    return [
        {
            "rel": "GetAccountsDetailAsync",
            "href": "/GetAccountsDetailAsync",
            "example": f"/GetAccountsDetailAsync/{request_id}",
        }
    ]


def authorize_async_links(request_id: str) -> list[JSON]:
    """An /Authorize 202's Links: the same pattern, for the sandbox's AuthorizeAsync."""
    return [
        {
            "rel": "AuthorizeAsync",
            "href": "/AuthorizeAsync",
            "example": f"/AuthorizeAsync/{request_id}",
        }
    ]


class BodyError(ValueError):
    """The request body is not a JSON object."""


class FlinksBody:
    """A JSON object body read the way Flinks (ASP.NET model binding) does: keys ignore case."""

    __slots__ = ("_by_lower", "keys")

    def __init__(self, raw: dict[str, Any]) -> None:
        self.keys = list(raw)
        self._by_lower = {key.lower(): value for key, value in raw.items()}

    @classmethod
    def parse(cls, data: bytes) -> FlinksBody:
        if not data.strip():
            return cls({})
        try:
            raw = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BodyError("the body is not valid JSON") from exc
        if not isinstance(raw, dict):
            raise BodyError("the body must be a JSON object")
        return cls(raw)

    def get(self, name: str) -> Any:
        return self._by_lower.get(name.lower())

    def text(self, name: str) -> str | None:
        value = self.get(name)
        if value is None:
            return None
        if isinstance(value, str):
            return value
        if isinstance(value, bool | int | float):
            return json.dumps(value)
        raise BodyError(f"{name} must be a string")

    def flag(self, name: str) -> bool | None:
        value = self.get(name)
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise BodyError(f"{name} must be a boolean")


def flinks_timestamp(moment: datetime) -> str:
    """Flinks' LastRefresh format: UTC, no offset, microseconds ("2026-01-21T20:47:47.145999")."""
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds")


def login_object(card: Card) -> JSON:
    last = card.last_refresh or card.created_at
    return {
        "Username": card.user.username,
        "IsScheduledRefresh": card.is_scheduled_refresh,
        "LastRefresh": flinks_timestamp(last),
        "Type": "Personal",
        "Id": card.login_id,
    }


def error_body(status: int, code: str, message: str, **extra: Any) -> JSON:
    body: JSON = {"HttpStatusCode": status, "Message": message, "FlinksCode": code}
    body.update({key: value for key, value in extra.items() if value is not None})
    return body


def authorized_body(card: Card, request_id: str, tag: str | None) -> JSON:
    body: JSON = {
        "HttpStatusCode": 200,
        "Links": DATA_LINKS,
        "InstitutionName": INSTITUTION,
        "Login": login_object(card),
        "InstitutionId": INSTITUTION_ID,
        "Institution": INSTITUTION,
        "RequestId": request_id,
    }
    if tag is not None:
        body["Tag"] = tag
    return body


def accounts_detail_body(
    card: Card, request_id: str, tag: str | None, today: date, options: data.DetailOptions
) -> JSON:
    """GetAccountsDetail's 200: also the body of its webhook, which adds ``ResponseType``."""
    accounts = data.accounts_detail(card.login_id, today, options)
    return data.envelope(accounts, login_object(card), request_id, tag)


def challenge_body(challenges: list[JSON], request_id: str) -> JSON:
    """A 203 as documented: no Tag (contract 12.1 #17)."""
    return {
        "Links": AUTHORIZE_LINKS,
        "HttpStatusCode": 203,
        "SecurityChallenges": challenges,
        "Institution": INSTITUTION,
        "RequestId": request_id,
    }


def pending_body(
    code: str, message: str, request_id: str, tag: str | None = None, *, data: bool = False
) -> JSON:
    links = detail_async_links(request_id) if data else authorize_async_links(request_id)
    return error_body(
        202,
        code,
        message,
        RequestId=request_id,
        Links=links,
        Institution=INSTITUTION,
        Tag=tag,
    )
