"""A scripted stand-in for Flinks behind `httpx.MockTransport`, canary values, payloads.

Each canary is unique, so finding one in a log line or an error message is proof of a leak.
"""

from __future__ import annotations

import itertools
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import SecretStr

from app.flinks import FlinksClient, FlinksTimeouts, RetryPolicy

API_URL = "https://toolbox-api.private.fin.ag"
CUSTOMER_ID = "43387ca6-0391-4c82-857d-70d95f087ecb"
BANKING_PATH = f"/v3/{CUSTOMER_ID}/BankingServices"
SECRET = "secret-canary-5d1c0a77"
API_KEY = "apikey-canary-7e44d1"
TOKEN_PREFIX = "token-canary-"
LOGIN_ID = "loginid-canary-91e2c4"
REQUEST_ID = "requestid-canary-3b7f08"
STATE = "state-canary-c0ffee42"
CANARIES = (SECRET, API_KEY, TOKEN_PREFIX, LOGIN_ID, REQUEST_ID, STATE)

MINT, AUTHORIZE, OAUTH = "GenerateAuthorizeToken", "Authorize", "OAuthAuthorize"
AUTHORIZE_ASYNC = "AuthorizeAsync"

# flinks-contract.md section 8, in its order.
SECTION_8_CODES = [
    "OK",
    "CREATED",
    "OPERATION_PENDING",
    "OPERATION_DISPATCHED",
    "SESSION_NONEXISTENT",
    "CARD_IN_USE",
    "ACCESS_DENIED",
    "INVALID_LOGIN",
    "INVALID_REQUEST",
    "INVALID_USERNAME",
    "INVALID_PASSWORD",
    "INVALID_SECURITY_RESPONSE",
    "INVALID_SECURITY_RESPONSE_NO_RETRY",
    "QUESTION_NOT_FOUND",
    "RETRY_LATER",
    "TOO_MANY_REQUESTS",
    "UNKNOWN_CHALLENGE_KEY",
    "UNAUTHORIZED",
    "NEW_ACCOUNT",
    "DISABLED_LOGIN",
    "DISABLED_INSTITUTION",
    "AGGREGATION_ERROR",
    "SESSION_EXPIRED",
    "CONCURRENT_SESSION",
    "ALREADY_AUTHORIZED",
    "SECURITYRESPONSES_INCOMPLETE",
    "NO_TRANSACTION",
    "METHOD_NOT_AVAILABLE",
    "CUSTOMER_NOT_FOUND",
    "NO_BROWSER_AVAILABLE",
]
NOT_FAILURES = {"OK", "CREATED", "OPERATION_PENDING", "OPERATION_DISPATCHED"}

# A scripted reply: a response, an httpx exception class to raise, or a function of the request.
Reply = httpx.Response | type[httpx.RequestError] | Callable[[httpx.Request], httpx.Response]


def endpoint_of(request: httpx.Request) -> str:
    path = request.url.path
    if path == f"{BANKING_PATH}/GenerateAuthorizeToken":
        return MINT
    if path == f"{BANKING_PATH}/Authorize":
        return AUTHORIZE
    if path.startswith(f"{BANKING_PATH}/AuthorizeAsync/"):
        return AUTHORIZE_ASYNC
    if path == "/v3/oauth/authorize":
        return OAUTH
    raise AssertionError("a request went somewhere other than a Flinks endpoint")


@dataclass
class FakeFlinks:
    """Answers each endpoint from its script, in order; unscripted mints get a fresh token."""

    requests: list[httpx.Request] = field(default_factory=list)
    minted: list[str] = field(default_factory=list)
    _scripts: defaultdict[str, deque[Reply]] = field(default_factory=lambda: defaultdict(deque))

    def script(self, endpoint: str, *replies: Reply) -> None:
        self._scripts[endpoint].extend(replies)

    def calls(self, endpoint: str) -> list[httpx.Request]:
        return [r for r in self.requests if endpoint_of(r) == endpoint]

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        endpoint = endpoint_of(request)
        script = self._scripts[endpoint]
        if script:
            reply = script.popleft()
        elif endpoint == MINT:
            reply = self._mint()
        else:
            raise AssertionError(f"unscripted call to {endpoint}")
        if isinstance(reply, type):
            raise reply("simulated failure", request=request)
        if isinstance(reply, httpx.Response):
            return reply
        return reply(request)

    def _mint(self) -> httpx.Response:
        token = f"{TOKEN_PREFIX}{len(self.minted) + 1}"
        self.minted.append(token)
        return respond(200, {"HttpStatusCode": 200, "Token": token})


def respond(
    status: int, body: object = None, headers: Mapping[str, str] | None = None
) -> httpx.Response:
    if body is None:
        return httpx.Response(status, headers=headers)
    return httpx.Response(status, json=body, headers=headers)


def connected_body(*, login_id: str | None = LOGIN_ID) -> dict[str, Any]:
    login: dict[str, Any] = {
        "Username": "Greatday",
        "IsScheduledRefresh": False,
        "LastRefresh": "2026-01-21T20:47:47.145999",
        "Type": "Personal",
    }
    if login_id is not None:
        login["Id"] = login_id
    return {
        "HttpStatusCode": 200,
        "Links": [{"rel": "AccountsDetail", "href": "/GetAccountsDetail", "example": None}],
        "InstitutionName": "FlinksCapital",
        "Login": login,
        "InstitutionId": 14,
        "Institution": "FlinksCapital",
        "RequestId": REQUEST_ID,
    }


def mfa_body(*prompts: str, **challenge: object) -> dict[str, Any]:
    """A 203; `challenge` adds fields to each challenge (`Type`, `Iterables`)."""
    return {
        "Links": [{"rel": "Authorization", "href": "/Authorize", "example": None}],
        "HttpStatusCode": 203,
        "SecurityChallenges": [
            {"Type": "QuestionAndAnswer", "Prompt": p, **challenge} for p in prompts
        ],
        "Institution": "FlinksCapital",
        "RequestId": REQUEST_ID,
    }


def status_body(
    status: int, flinks_code: str | None, message: str = "Flinks says no"
) -> dict[str, Any]:
    body: dict[str, Any] = {"HttpStatusCode": status, "Message": message, "Links": []}
    if flinks_code is not None:
        body["FlinksCode"] = flinks_code
    body["RequestId"] = REQUEST_ID
    return body


@dataclass
class RecordedSleeps:
    delays: list[float] = field(default_factory=list)

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def cycling(values: Iterable[float]) -> Callable[[], float]:
    it = itertools.cycle(values)
    return lambda: next(it)


@dataclass
class FakeTime:
    """A monotonic clock that moves only when told to, and a sleep that moves it."""

    now: float = 0.0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.now += delay


def make_client(
    http: httpx.AsyncClient,
    retry: RetryPolicy,
    *,
    api_url: str = API_URL,
    timeouts: FlinksTimeouts | None = None,
    clock: Callable[[], float] | None = None,
    api_key: str | None = API_KEY,
) -> FlinksClient:
    return FlinksClient(
        http,
        api_url=api_url,
        customer_id=CUSTOMER_ID,
        secret_key=SecretStr(SECRET),
        api_key=SecretStr(api_key) if api_key is not None else None,
        mint_retry=retry,
        send_retry=retry,
        timeouts=timeouts or FlinksTimeouts(),
        clock=clock or time.monotonic,
    )
