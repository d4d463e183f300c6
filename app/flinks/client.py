"""The Flinks API client: authorize tokens, /Authorize (live and cached) and its MFA
continuation, following a 202 on AuthorizeAsync, the start of Flinks' custom OAuth flow, the
account data endpoints (GetAccountsDetail, GetAccountsSummary and their Async endpoints) and
DeleteCard.

It runs over the app's shared `httpx.AsyncClient` and never creates, configures or closes one.
Every call has explicit timeouts, never follows a redirect, and reads at most
`MAX_BODY_BYTES`; every operation (with its retries and token mints) has a total deadline.
The secret key is sent only to /GenerateAuthorizeToken; the API key (`x-api-key`) only to the
data, async and DeleteCard endpoints, never to a mint or /Authorize. JSON numbers are read as
`Decimal`, so amounts keep every digit Flinks sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Final, Literal, TypeVar, get_args
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, SecretStr, ValidationError

from app.flinks.breaker import CircuitBreaker
from app.flinks.codes import (
    FLINKS_CODE_OUTCOMES,
    FLINKS_ERROR,
    clean_flinks_code,
    failure_for_flinks_code,
)
from app.flinks.errors import (
    FlinksBadResponse,
    FlinksCircuitOpen,
    FlinksError,
    FlinksRejected,
    FlinksTimeout,
    FlinksUnavailable,
)
from app.flinks.models import (
    AccountsDetailRequest,
    AccountsResponse,
    AccountsSummaryRequest,
    AuthorizeMfaRequired,
    AuthorizeRequest,
    AuthorizeSuccess,
    BalancePayload,
    FlinksLanguage,
    FlinksStatusResponse,
    TokenResponse,
)
from app.flinks.outcomes import (
    AccountsOutcome,
    AccountsPending,
    AccountsReady,
    AuthorizeOutcome,
    AuthorizeToken,
    Connected,
    Failed,
    FlinksAccount,
    FlinksBalance,
    FlinksChallenge,
    FlinksTransaction,
    MfaRequired,
    Pending,
)
from app.flinks.policies import Deadline, FlinksTimeouts, RetryPolicy, parse_retry_after
from app.flinks.urls import checked_base_url, resolved_location

log = logging.getLogger("app.flinks")

MAX_BODY_BYTES: Final = 1 << 20
_JSON_HEADERS: Final = {"Content-Type": "application/json", "Accept": "application/json"}


class _BodyTooLarge(Exception):
    pass


# Failures that happen before a single byte of the request is written.
_NOT_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Answers that came but cannot be read: an undecodable body, a Location httpx cannot parse (it
# reads every redirect's Location, even when not following it), a body over the cap.
_UNREADABLE: Final = (httpx.DecodingError, httpx.InvalidURL, _BodyTooLarge)
# What the client maps to a FlinksError; TimeoutError is the deadline's own.
_UPSTREAM_FAILURES: Final = (*_UNREADABLE, httpx.RequestError, TimeoutError)
_CUSTOMER_ID: Final = re.compile(r"[A-Za-z0-9-]{1,64}")
# A RequestId goes into a path (AuthorizeAsync/{requestId}), and so does a LoginId
# (DeleteCard/{loginId}): Flinks' are GUIDs.
_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9-]{1,64}")
_LOGIN_ID: Final = _REQUEST_ID
# A 401 that refuses the token itself ("You must provide a valid authorize token"): no code, or
# ACCESS_DENIED ("no valid authentication credentials").
_TOKEN_REFUSED_CODES: Final = (None, "ACCESS_DENIED")
_DEFAULT_TIMEOUTS: Final = FlinksTimeouts()
_DEFAULT_RETRY: Final = RetryPolicy()

_T = TypeVar("_T")
_M = TypeVar("_M", bound=BaseModel)


class Endpoint(StrEnum):
    MINT = "GenerateAuthorizeToken"
    AUTHORIZE = "Authorize"
    AUTHORIZE_ASYNC = "AuthorizeAsync"
    OAUTH_AUTHORIZE = "OAuthAuthorize"
    ACCOUNTS_DETAIL = "GetAccountsDetail"
    ACCOUNTS_DETAIL_ASYNC = "GetAccountsDetailAsync"
    ACCOUNTS_SUMMARY = "GetAccountsSummary"
    ACCOUNTS_SUMMARY_ASYNC = "GetAccountsSummaryAsync"
    DELETE_CARD = "DeleteCard"


class FlinksClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        api_url: str,
        customer_id: str,
        secret_key: SecretStr,
        api_key: SecretStr | None = None,
        timeouts: FlinksTimeouts = _DEFAULT_TIMEOUTS,
        mint_retry: RetryPolicy = _DEFAULT_RETRY,
        send_retry: RetryPolicy = _DEFAULT_RETRY,
        breaker: CircuitBreaker | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`mint_retry` governs /GenerateAuthorizeToken (safe to repeat). `send_retry` governs
        /Authorize, the OAuth call and DeleteCard, which are repeated only when nothing was
        sent, and the reads (AuthorizeAsync, the data endpoints and their Async endpoints),
        repeated on any transient failure. `api_key` is sent as `x-api-key` to the reads and
        DeleteCard; without one (None or empty) no such header is sent, for instances where
        Flinks has not enabled it. `clock` (monotonic seconds) measures the operations'
        deadlines."""
        if not _CUSTOMER_ID.fullmatch(customer_id):
            raise ValueError("customer_id must be letters, digits and dashes")
        if not secret_key.get_secret_value():
            raise ValueError("secret_key is empty")
        self._http = http
        self._api_url = checked_base_url(api_url, what="api_url").rstrip("/")
        self._banking_url = f"{self._api_url}/v3/{customer_id}/BankingServices"
        self._oauth_url = f"{self._api_url}/v3/oauth/authorize"
        self._secret_key = secret_key
        self._api_key = api_key if api_key is not None and api_key.get_secret_value() else None
        self._timeouts = timeouts
        self._mint_retry = mint_retry
        self._send_retry = send_retry
        # Without one, a breaker that never opens: the app passes a configured one.
        self.breaker = breaker or CircuitBreaker(failure_threshold=sys.maxsize)
        self._clock = clock

    async def generate_authorize_token(self) -> AuthorizeToken:
        return await self._mint(self._deadline(self._timeouts.deadline))

    async def authorize_live(
        self, *, login_id: str, language: FlinksLanguage = "en", tag: str | None = None
    ) -> AuthorizeOutcome:
        """Live /Authorize (`MostRecentCached=false`, `Save=true`): Flinks logs in at the bank."""
        request = AuthorizeRequest(
            LoginId=login_id, MostRecentCached=False, Save=True, Language=language, Tag=tag
        )
        deadline = self._deadline(self._timeouts.authorize_deadline)
        return await self._authorize_with_fresh_token(request, login_id, deadline)

    async def authorize_cached(self, *, login_id: str) -> AuthorizeOutcome:
        """Cached /Authorize (`MostRecentCached=true`, nothing else): what Flinks Connect's sign-in
        (or the last live session) produced, the documented follow-up of Connect. No bank login;
        a 202 OPERATION_PENDING while that processing still runs."""
        request = AuthorizeRequest(LoginId=login_id, MostRecentCached=True)
        deadline = self._deadline(self._timeouts.deadline)
        return await self._authorize_with_fresh_token(request, login_id, deadline)

    async def authorize_async(self, *, request_id: str) -> AuthorizeOutcome:
        """`GET AuthorizeAsync/{requestId}` with `x-api-key`: where an /Authorize that answered
        202 stands now (202 again, 200, 203, or its failure). Flinks asks callers to poll this
        at most every 10 s, for at most 30 minutes; the caller paces it."""
        _check_request_id(request_id)
        headers = self._api_headers(json_body=False)
        deadline = self._deadline(self._timeouts.deadline)

        async def attempt(number: int) -> AuthorizeOutcome:
            reply = await self._exchange(
                Endpoint.AUTHORIZE_ASYNC,
                "GET",
                f"{self._banking_url}/AuthorizeAsync/{request_id}",
                headers=headers,
                read_timeout=self._timeouts.mint_read,
                attempt=number,
                deadline=deadline,
            )
            if reply.status == 401 and reply.flinks_code in _TOKEN_REFUSED_CODES:
                # Our API key was refused: nothing is known about the login itself.
                raise reply.error()
            return _authorize_outcome(reply, token=None, login_id=None)

        return await self._retrying(self._send_retry, attempt, _is_transient, deadline)

    async def answer_mfa(
        self,
        *,
        token: SecretStr | None,
        request_id: str,
        responses: Mapping[str, Sequence[str]],
    ) -> AuthorizeOutcome:
        """Answers a 203; `responses` is Flinks' SecurityResponses ({key: [answers]}).

        `token` is the one that produced the 203: the legacy docs send it back, current ones
        call a token single use. If Flinks refuses it, the same answers go once more with a
        fresh token and the same RequestId (a refused token leaves the MFA session as it was).
        Without a token, a fresh one is minted at once."""
        body = AuthorizeRequest(
            RequestId=request_id, SecurityResponses=_security_responses(responses)
        ).to_json()
        deadline = self._deadline(self._timeouts.authorize_deadline)
        reusable = token

        async def attempt(number: int) -> AuthorizeOutcome:
            nonlocal reusable
            sent = reusable or (await self._mint(deadline)).value
            reply = await self._post_authorize(sent, body, attempt=number, deadline=deadline)
            if reusable is not None and _token_refused(reply):
                log.info("flinks.token_reuse_refused", extra={"endpoint": Endpoint.AUTHORIZE})
                reusable = None
                sent = (await self._mint(deadline)).value
                reply = await self._post_authorize(sent, body, attempt=number, deadline=deadline)
            return _authorize_outcome(reply, token=sent, login_id=None)

        return await self._retrying(
            self._send_retry, attempt, _not_sent_to(Endpoint.AUTHORIZE), deadline
        )

    async def oauth_authorize_location(
        self,
        *,
        institution: str,
        redirect_uri: str,
        state: str,
        language: FlinksLanguage = "en",
        tag: str | None = None,
    ) -> str:
        """The bank login URL that Flinks' /v3/oauth/authorize redirects to (absolute)."""
        if language not in get_args(FlinksLanguage):
            raise ValueError("language must be 'en' or 'fr'")
        params = {
            "institution_id": institution,
            "redirect_uri": redirect_uri,
            "state": state,
            "lang": language,
        }
        if tag is not None:
            params["tag"] = tag
        deadline = self._deadline(self._timeouts.deadline)

        async def attempt(number: int) -> str:
            token = (await self._mint(deadline)).value
            reply = await self._exchange(
                Endpoint.OAUTH_AUTHORIZE,
                "GET",
                self._oauth_url,
                headers={"flinks-auth-key": token.get_secret_value()},
                params=params,
                read_timeout=self._timeouts.oauth_read,
                attempt=number,
                deadline=deadline,
            )
            if reply.status in (302, 303):
                return self._redirect_target(reply)
            raise reply.error()

        retryable = _not_sent_to(Endpoint.OAUTH_AUTHORIZE)
        return await self._retrying(self._send_retry, attempt, retryable, deadline)

    async def accounts_detail(
        self,
        *,
        request_id: str,
        days: Literal[90, 365] = 90,
        with_transactions: bool = True,
    ) -> AccountsOutcome:
        """`POST GetAccountsDetail` for the session `request_id` (a `Connected.request_id`):
        every account with its identity (full account number), balances and, when asked, the
        transactions of the last `days` days.

        Flinks typically answers 202 first (`AccountsPending`): poll `accounts_detail_async`
        with its `request_id`, at most every 10 s, for at most 30 minutes. The call has the
        client's short deadline (`FlinksTimeouts.deadline`), as a request may be waiting on
        it; an older Flinks page says a call can be held up to 210 s before its 202, which
        would end in `FlinksTimeout`. A read: transient failures are retried.

        Raises `FlinksRejected` (see its `status` and `flinks_code`) for, among others:
        `SESSION_NONEXISTENT` (400: the RequestId is unknown or expired; open a new session
        with a cached /Authorize), `UNAUTHORIZED` (401: the session is not authorized, e.g.
        its MFA is unanswered), `ACCESS_DENIED` (401: our x-api-key was refused).
        """
        if days not in (90, 365):
            raise ValueError("days must be 90 or 365")
        _check_request_id(request_id)
        body = AccountsDetailRequest(
            RequestId=request_id,
            WithAccountIdentity=True,
            WithBalance=True,
            WithTransactions=with_transactions,
            DaysOfTransactions="Days365" if days == 365 else "Days90",
        ).to_json()
        return await self._read_accounts(
            Endpoint.ACCOUNTS_DETAIL,
            "POST",
            f"{self._banking_url}/GetAccountsDetail",
            request_id,
            body=body,
            read_timeout=self._timeouts.oauth_read,
        )

    async def accounts_detail_async(self, *, request_id: str) -> AccountsOutcome:
        """`GET GetAccountsDetailAsync/{requestId}`, after `accounts_detail` answered
        `AccountsPending`: 202 again (`AccountsPending`) or the data (`AccountsReady`, with the
        options of that first call). The caller paces it: at most every 10 s, for at most 30
        minutes. Errors as `accounts_detail`."""
        _check_request_id(request_id)
        return await self._read_accounts(
            Endpoint.ACCOUNTS_DETAIL_ASYNC,
            "GET",
            f"{self._banking_url}/GetAccountsDetailAsync/{request_id}",
            request_id,
            read_timeout=self._timeouts.mint_read,
        )

    async def accounts_summary(self, *, request_id: str) -> AccountsOutcome:
        """`POST GetAccountsSummary`: the accounts with balances, without transactions.
        `AccountsPending` on a 202: poll `accounts_summary_async`. Deadline and errors as
        `accounts_detail`."""
        _check_request_id(request_id)
        return await self._read_accounts(
            Endpoint.ACCOUNTS_SUMMARY,
            "POST",
            f"{self._banking_url}/GetAccountsSummary",
            request_id,
            body=AccountsSummaryRequest(RequestId=request_id).to_json(),
            read_timeout=self._timeouts.oauth_read,
        )

    async def accounts_summary_async(self, *, request_id: str) -> AccountsOutcome:
        """`GET GetAccountsSummaryAsync/{requestId}`: as `accounts_detail_async`, for a summary
        that answered `AccountsPending`."""
        _check_request_id(request_id)
        return await self._read_accounts(
            Endpoint.ACCOUNTS_SUMMARY_ASYNC,
            "GET",
            f"{self._banking_url}/GetAccountsSummaryAsync/{request_id}",
            request_id,
            read_timeout=self._timeouts.mint_read,
        )

    async def delete_card(self, *, login_id: str) -> None:
        """`DELETE DeleteCard/{loginId}`: Flinks deletes the login and all its data. Returns on
        200.

        Raises `FlinksRejected` with `flinks_code`:
        - `CARD_IN_USE` (400): the login is still being processed (a GetAccountsDetail not yet
          delivered, an /Authorize still running); try again later;
        - `INVALID_LOGIN` (401; 400 on some instances): Flinks does not know the loginId, so
          it is already deleted (a repeated DeleteCard answers this): treat as done;
        - `ACCESS_DENIED` (401): our x-api-key was refused.

        Repeated only when the request certainly was not sent (connect errors), like a live
        /Authorize: after a lost answer the caller decides, and a second DeleteCard then
        answers INVALID_LOGIN if the first one went through.
        """
        if not _LOGIN_ID.fullmatch(login_id):
            raise ValueError("login_id must be letters, digits and dashes")
        headers = self._api_headers(json_body=False)
        deadline = self._deadline(self._timeouts.deadline)

        async def attempt(number: int) -> None:
            reply = await self._exchange(
                Endpoint.DELETE_CARD,
                "DELETE",
                f"{self._banking_url}/DeleteCard/{login_id}",
                headers=headers,
                read_timeout=self._timeouts.mint_read,
                attempt=number,
                deadline=deadline,
            )
            if reply.status != 200:
                raise reply.error()

        retryable = _not_sent_to(Endpoint.DELETE_CARD)
        await self._retrying(self._send_retry, attempt, retryable, deadline)

    def _api_headers(self, *, json_body: bool) -> dict[str, str]:
        """Headers of the calls that take the API key (and no authorize token)."""
        headers = dict(_JSON_HEADERS) if json_body else {"Accept": "application/json"}
        if self._api_key is not None:
            headers["x-api-key"] = self._api_key.get_secret_value()
        return headers

    async def _read_accounts(
        self,
        endpoint: Endpoint,
        method: str,
        url: str,
        request_id: str,
        *,
        read_timeout: float,
        body: dict[str, object] | None = None,
    ) -> AccountsOutcome:
        """One data read, repeated on transient failures within the short deadline: 200 is the
        accounts, 202 pending."""
        headers = self._api_headers(json_body=body is not None)
        deadline = self._deadline(self._timeouts.deadline)

        async def attempt(number: int) -> AccountsOutcome:
            reply = await self._exchange(
                endpoint,
                method,
                url,
                headers=headers,
                body=body,
                read_timeout=read_timeout,
                attempt=number,
                deadline=deadline,
            )
            return _accounts_outcome(reply, request_id)

        return await self._retrying(self._send_retry, attempt, _is_transient, deadline)

    def _deadline(self, seconds: float) -> Deadline:
        return Deadline.after(seconds, self._clock)

    async def _mint(self, deadline: Deadline) -> AuthorizeToken:
        """A token, with the mint's own retries, within `deadline` and the mint's own."""
        deadline = deadline.within(self._timeouts.deadline)

        async def attempt(number: int) -> AuthorizeToken:
            reply = await self._exchange(
                Endpoint.MINT,
                "POST",
                f"{self._banking_url}/GenerateAuthorizeToken",
                headers={"flinks-auth-key": self._secret_key.get_secret_value(), **_JSON_HEADERS},
                read_timeout=self._timeouts.mint_read,
                attempt=number,
                deadline=deadline,
            )
            if reply.status != 200:
                raise reply.error()
            token = reply.model(TokenResponse).Token
            return AuthorizeToken(value=token, minted_at=datetime.now(UTC))

        return await self._retrying(self._mint_retry, attempt, _is_transient, deadline)

    async def _authorize_with_fresh_token(
        self, request: AuthorizeRequest, login_id: str, deadline: Deadline
    ) -> AuthorizeOutcome:
        body = request.to_json()

        async def attempt(number: int) -> AuthorizeOutcome:
            token = (await self._mint(deadline)).value
            reply = await self._post_authorize(token, body, attempt=number, deadline=deadline)
            return _authorize_outcome(reply, token=token, login_id=login_id)

        return await self._retrying(
            self._send_retry, attempt, _not_sent_to(Endpoint.AUTHORIZE), deadline
        )

    async def _post_authorize(
        self, token: SecretStr, body: dict[str, object], *, attempt: int, deadline: Deadline
    ) -> _Reply:
        return await self._exchange(
            Endpoint.AUTHORIZE,
            "POST",
            f"{self._banking_url}/Authorize",
            headers={"flinks-auth-key": token.get_secret_value(), **_JSON_HEADERS},
            body=body,
            read_timeout=self._timeouts.authorize_read,
            attempt=attempt,
            deadline=deadline,
        )

    async def _retrying(
        self,
        policy: RetryPolicy,
        attempt: Callable[[int], Awaitable[_T]],
        retryable: Callable[[FlinksError], bool],
        deadline: Deadline,
    ) -> _T:
        """`attempt(1)`, `attempt(2)`, ... while `policy` and `retryable` allow it and the next
        attempt would still have `min_attempt` seconds before the deadline."""
        number = 1
        while True:
            try:
                return await attempt(number)
            except FlinksError as exc:
                retry_after = exc.retry_after if isinstance(exc, FlinksUnavailable) else None
                delay = policy.delay_before_retry(number, retry_after) if retryable(exc) else None
                if delay is None or deadline.remaining() - delay < self._timeouts.min_attempt:
                    raise
            await policy.sleep(delay)
            number += 1

    async def _exchange(
        self,
        endpoint: Endpoint,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        read_timeout: float,
        attempt: int,
        deadline: Deadline,
        body: dict[str, object] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> _Reply:
        """One HTTP exchange, logged as one line, settled with the circuit breaker however it
        ends; upstream failures become `FlinksError`s. The deadline bounds it as a whole."""
        remaining = deadline.remaining()
        if remaining <= 0:
            raise FlinksTimeout(
                f"Flinks {endpoint} is not called: no time is left for it",
                endpoint=endpoint,
                may_have_been_sent=False,
            )
        async with self.breaker.call(endpoint) as call:
            started = time.perf_counter()
            status: int | None = None
            flinks_code: str | None = None
            error: str | None = None
            try:
                # httpx's timeouts are per phase and per read: this one bounds the whole call.
                async with (
                    asyncio.timeout(remaining),
                    self._http.stream(
                        method,
                        url,
                        headers=headers,
                        json=body,
                        params=params,
                        timeout=self._timeouts.for_attempt(read_timeout, remaining),
                        follow_redirects=False,
                    ) as response,
                ):
                    status = response.status_code
                    content = await _read_capped(response)
                reply = _Reply.decode(endpoint, status, response.headers, content)
                flinks_code = reply.flinks_code
            except BaseException as exc:
                error = _error_name(exc)
                if not isinstance(exc, _UPSTREAM_FAILURES):
                    raise  # a cancellation or a bug: the breaker settles it by how it ended
                call.record(failed=_counts_against_flinks(exc, status))
                raise _flinks_error(endpoint, exc, status) from exc
            finally:
                _log_call(
                    endpoint, attempt, started, status=status, flinks_code=flinks_code, error=error
                )
            call.record(failed=_is_outage(status))
        return reply

    def _redirect_target(self, reply: _Reply) -> str:
        """The `Location` as an absolute URL: https, or http only when Flinks itself is http
        (the local sandbox)."""
        allowed_schemes = {"https", urlsplit(self._api_url).scheme}
        target = resolved_location(self._oauth_url, reply.headers.get("Location"))
        if target is not None and urlsplit(target).scheme in allowed_schemes:
            return target
        raise FlinksBadResponse(
            f"Flinks {reply.endpoint} redirected without a usable Location",
            endpoint=reply.endpoint,
            status=reply.status,
        )


@dataclass(frozen=True, slots=True)
class _Reply:
    endpoint: Endpoint
    status: int
    headers: httpx.Headers = field(repr=False)
    payload: object = field(repr=False)
    json_error: Exception | None = field(repr=False)
    flinks_code: str | None

    @classmethod
    def decode(
        cls, endpoint: Endpoint, status: int, headers: httpx.Headers, content: bytes
    ) -> _Reply:
        try:
            payload: object = json.loads(content, parse_float=Decimal)
        except (ValueError, RecursionError) as exc:
            return cls(endpoint, status, headers, None, exc, None)
        code = clean_flinks_code(payload.get("FlinksCode")) if isinstance(payload, dict) else None
        return cls(endpoint, status, headers, payload, None, code)

    def model(self, model_type: type[_M]) -> _M:
        cause = self.json_error
        if cause is None:
            try:
                return model_type.model_validate(self.payload)
            except ValidationError as exc:
                cause = exc
        raise FlinksBadResponse(
            f"Flinks {self.endpoint} answered HTTP {self.status} with an unexpected body",
            endpoint=self.endpoint,
            status=self.status,
        ) from cause

    def error(self) -> FlinksError:
        """The exception for a status the caller has no use for."""
        where = f"Flinks {self.endpoint}"
        if self.status == 429 or self.status >= 500:
            return FlinksUnavailable(
                f"{where} answered HTTP {self.status}",
                endpoint=self.endpoint,
                may_have_been_sent=True,
                status=self.status,
                retry_after=parse_retry_after(self.headers.get("Retry-After")),
            )
        if 400 <= self.status < 500:
            code = f" {self.flinks_code}" if self.flinks_code else ""
            return FlinksRejected(
                f"{where} refused the request: HTTP {self.status}{code}",
                endpoint=self.endpoint,
                status=self.status,
                flinks_code=self.flinks_code,
            )
        return FlinksBadResponse(
            f"{where} answered an unexpected HTTP {self.status}",
            endpoint=self.endpoint,
            status=self.status,
        )


def _authorize_outcome(
    reply: _Reply, *, token: SecretStr | None, login_id: str | None
) -> AuthorizeOutcome:
    status, code = reply.status, reply.flinks_code
    if status == 200:
        return _connected(reply, login_id)
    if status == 203 or (status == 401 and _carries_challenges(reply)):
        # A 401 with new SecurityChallenges: the answer was wrong and Flinks asks again (public
        # clients read it so; contract 12.1 #9).
        mfa = reply.model(AuthorizeMfaRequired)
        return MfaRequired(
            request_id=mfa.RequestId,
            challenges=tuple(
                FlinksChallenge(c.Type, c.Prompt, tuple(c.Iterables or ()))
                for c in mfa.SecurityChallenges
            ),
            institution=mfa.Institution,
            token=token,
            rejected=status == 401,
        )
    if status == 202:
        pending = reply.model(FlinksStatusResponse)
        return Pending(request_id=pending.RequestId, flinks_code=code or "OPERATION_PENDING")
    if 400 <= status < 500 and status != 429:
        if code is not None:
            return Failed(failure_for_flinks_code(code), code, status)
        if status == 401:  # "You must provide a valid authorize token" comes without a FlinksCode
            return Failed(FLINKS_CODE_OUTCOMES["ACCESS_DENIED"], None, status)
    if status >= 500:
        # A documented failure sent as a 5xx (AGGREGATION_ERROR is a 500) is an answer, not an
        # outage; an unknown or missing code on a 5xx is an outage.
        outcome = failure_for_flinks_code(code)
        if outcome is not FLINKS_ERROR:
            return Failed(outcome, code, status)
    raise reply.error()


def _accounts_outcome(reply: _Reply, request_id: str) -> AccountsOutcome:
    """A data endpoint's answer. Both outcomes carry the RequestId that was sent: the Async
    endpoint takes that same one (contract 6.3), whatever a body says."""
    if reply.status == 200:
        accounts = _accounts(reply.model(AccountsResponse))
        return AccountsReady(request_id=request_id, accounts=accounts)
    if reply.status == 202:
        reply.model(FlinksStatusResponse)  # a 202 we cannot read is not taken as pending
        return AccountsPending(request_id=request_id)
    raise reply.error()


def accounts_in_payload(payload: Mapping[str, object]) -> tuple[FlinksAccount, ...]:
    """The accounts of a GetAccountsDetail body that did not come as an answer to a call (a
    webhook's `ResponseType: GetAccountsDetail`, the same payload as the 200). ValueError
    (pydantic's ValidationError) when it cannot be read."""
    return _accounts(AccountsResponse.model_validate(payload))


def _accounts(response: AccountsResponse) -> tuple[FlinksAccount, ...]:
    """The accounts, without what the BFF must not hold: no holder details (never parsed),
    no account or transaction without an id, no transaction without a date (counted in one
    log line, without their content)."""
    accounts: list[FlinksAccount] = []
    skipped_accounts = skipped_transactions = 0
    for account in response.Accounts or ():
        if not account.Id:
            skipped_accounts += 1
            continue
        transactions: list[FlinksTransaction] = []
        for txn in account.Transactions or ():
            if not txn.Id or txn.Date is None:
                skipped_transactions += 1
                continue
            transactions.append(
                FlinksTransaction(
                    transaction_id=txn.Id,
                    date=txn.Date,
                    description=txn.Description or "",
                    debit=txn.Debit,
                    credit=txn.Credit,
                    balance=txn.Balance,
                )
            )
        accounts.append(
            FlinksAccount(
                account_id=account.Id,
                title=account.Title,
                category=account.Category,
                type=account.Type,
                currency=account.Currency,
                account_number=account.AccountNumber,
                last_four=account.LastFourDigits,
                balance=_balance(account.Balance),
                transactions=tuple(transactions),
            )
        )
    if skipped_accounts or skipped_transactions:
        log.warning(
            "flinks.data_skipped",
            extra={"accounts": skipped_accounts, "transactions": skipped_transactions},
        )
    return tuple(accounts)


def _balance(balance: BalancePayload | None) -> FlinksBalance:
    if balance is None:
        return FlinksBalance(current=None, available=None, limit=None)
    return FlinksBalance(current=balance.Current, available=balance.Available, limit=balance.Limit)


def _check_request_id(request_id: str) -> None:
    if not _REQUEST_ID.fullmatch(request_id):
        raise ValueError("request_id must be letters, digits and dashes")


def _carries_challenges(reply: _Reply) -> bool:
    return isinstance(reply.payload, dict) and bool(reply.payload.get("SecurityChallenges"))


def _token_refused(reply: _Reply) -> bool:
    return (
        reply.status == 401
        and reply.flinks_code in _TOKEN_REFUSED_CODES
        and not _carries_challenges(reply)
    )


def _connected(reply: _Reply, requested_login_id: str | None) -> Connected:
    success = reply.model(AuthorizeSuccess)
    login_id = (success.Login and success.Login.Id) or requested_login_id
    if not login_id:
        raise FlinksBadResponse(
            f"Flinks {reply.endpoint} answered HTTP 200 without a loginId",
            endpoint=reply.endpoint,
            status=reply.status,
        )
    return Connected(
        login_id=login_id,
        request_id=success.RequestId,
        institution=success.Institution or success.InstitutionName,
        username=success.Login.Username if success.Login else None,
        is_scheduled_refresh=success.Login.IsScheduledRefresh if success.Login else None,
    )


def _security_responses(responses: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    if any(isinstance(answers, str) for answers in responses.values()):
        raise TypeError("each security response must be a sequence of answers, not a string")
    return {prompt: list(answers) for prompt, answers in responses.items()}


async def _read_capped(response: httpx.Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _is_outage(status: int) -> bool:
    return status >= 500 or status == 429


def _counts_against_flinks(exc: BaseException, status: int | None) -> bool:
    """No answer is a failure. An answer we cannot read counts by its status: Flinks did
    answer, so it is up, and opening the circuit would turn one bad body into 503s for all."""
    if isinstance(exc, _UNREADABLE):
        return status is not None and _is_outage(status)
    return True


def _flinks_error(endpoint: Endpoint, exc: BaseException, status: int | None) -> FlinksError:
    """The one mapping of an upstream failure to the client's typed errors."""
    sent = not isinstance(exc, _NOT_SENT)
    if isinstance(exc, (httpx.TimeoutException, TimeoutError)):
        return FlinksTimeout(
            f"Flinks {endpoint} did not answer in time", endpoint=endpoint, may_have_been_sent=sent
        )
    if isinstance(exc, _BodyTooLarge):
        return FlinksBadResponse(
            f"Flinks {endpoint} answered with a body over {MAX_BODY_BYTES} bytes",
            endpoint=endpoint,
            status=status,
        )
    if isinstance(exc, (httpx.DecodingError, httpx.InvalidURL)):
        return FlinksBadResponse(
            f"Flinks {endpoint} answered with a response that cannot be read",
            endpoint=endpoint,
            status=status,
        )
    return FlinksUnavailable(
        f"Flinks {endpoint} could not be reached", endpoint=endpoint, may_have_been_sent=sent
    )


def _error_name(exc: BaseException) -> str:
    if isinstance(exc, _BodyTooLarge):
        return "BodyTooLarge"
    if type(exc) is TimeoutError:
        return "DeadlineExceeded"
    return type(exc).__name__


def _is_transient(exc: FlinksError) -> bool:
    # An open circuit will not close within a retry's backoff: fail now.
    return isinstance(exc, (FlinksUnavailable, FlinksTimeout)) and not isinstance(
        exc, FlinksCircuitOpen
    )


def _not_sent_to(endpoint: Endpoint) -> Callable[[FlinksError], bool]:
    """Failures of `endpoint` itself that happened before anything was sent. A failed mint
    does not count: it has had its own retries already."""

    def retryable(exc: FlinksError) -> bool:
        return (
            exc.endpoint == endpoint
            and not exc.may_have_been_sent
            and not isinstance(exc, FlinksCircuitOpen)
        )

    return retryable


def _log_call(
    endpoint: Endpoint,
    attempt: int,
    started: float,
    *,
    status: int | None = None,
    flinks_code: str | None = None,
    error: str | None = None,
) -> None:
    """One line per upstream call: never a URL, header, body, token or identifier."""
    log.log(
        logging.INFO if error is None else logging.WARNING,
        "flinks.call",
        extra={
            "endpoint": endpoint.value,
            "status": status,
            "flinks_code": flinks_code,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            "attempt": attempt,
            "error": error,
        },
    )
