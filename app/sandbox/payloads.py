"""Flinks wire formats: case-insensitive request bodies, response bodies, error bodies."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from starlette.responses import JSONResponse

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
        "DeleteCard",
        "SetScheduledRefresh",
    )
}
OAUTH_ENDPOINT = "OAuthAuthorize"

MSG_BAD_AUTH_KEY = "You must provide a valid auth key"
MSG_BAD_TOKEN = "You must provide a valid authorize token"  # noqa: S105 - a message
MSG_BAD_API_KEY = "You must provide a valid x-api-key"
MSG_BAD_CUSTOMER = "The CustomerId provided is invalid"
MSG_BAD_CREDENTIALS = "The card number (username) or password provided is invalid"
MSG_BAD_LOGIN_ID = "The LoginId provided is either invalid or does not belong to the CustomerId"
MSG_NO_SESSION = "Inputs session id or card if were not found."
MSG_PENDING = "Your operation is still processing."
MSG_DISPATCHED = "Your operations had been dispatched to background process for long running jobs"
MSG_DISABLED = "The account was deactivated by the financial institution"
MSG_RETRY_LATER = "Flinks could not open a connection with the financial institution, retry later"
MSG_BAD_ANSWER = "The answer to the security question is invalid"
MSG_UNKNOWN_PROMPT = "The security response does not match the challenge that was asked"
MSG_NOT_AUTHORIZED = "The RequestId has not been authorized yet"
MSG_CARD_IN_USE = "The card is still being processed, retry later"

AUTHORIZE_LINKS = [{"rel": "Authorization", "href": "/Authorize", "example": None}]
DATA_LINKS = [
    {"rel": "AccountsDetail", "href": "/GetAccountsDetail", "example": None},
    {"rel": "AccountsSummary", "href": "/GetAccountsSummary", "example": None},
    {"rel": "Statements", "href": "/GetStatements", "example": None},
]
ASYNC_LINKS = [{"rel": "AccountsDetailAsync", "href": "/GetAccountsDetailAsync", "example": None}]


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

    def has(self, name: str) -> bool:
        return self.get(name) is not None

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


def challenge_body(prompt: str, request_id: str, tag: str | None, challenge_type: str) -> JSON:
    body: JSON = {
        "Links": AUTHORIZE_LINKS,
        "HttpStatusCode": 203,
        "SecurityChallenges": [{"Type": challenge_type, "Prompt": prompt}],
        "Institution": INSTITUTION,
        "RequestId": request_id,
    }
    if tag is not None:
        body["Tag"] = tag
    return body


def pending_body(code: str, message: str, request_id: str, tag: str | None = None) -> JSON:
    return error_body(
        202,
        code,
        message,
        RequestId=request_id,
        Links=ASYNC_LINKS,
        Institution=INSTITUTION,
        Tag=tag,
    )


def json_response(status: int, body: Any) -> JSONResponse:
    return JSONResponse(body, status_code=status)
