"""The Flinks API client: authorize tokens, /Authorize (live and cached) and its MFA
continuation, following a 202 on AuthorizeAsync, and the start of Flinks' custom OAuth flow.

It runs over the app's shared `httpx.AsyncClient` and never creates, configures or closes one.
Every call has explicit timeouts, never follows a redirect, and reads at most
`MAX_BODY_BYTES`; every operation (with its retries and token mints) has a total deadline.
The secret key is sent only to /GenerateAuthorizeToken; the API key (`x-api-key`) only to the
data and async endpoints, never to a mint.
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
from enum import StrEnum
from typing import Final, TypeVar, get_args
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
    AuthorizeMfaRequired,
    AuthorizeRequest,
    AuthorizeSuccess,
    FlinksLanguage,
    FlinksStatusResponse,
    TokenResponse,
)
from app.flinks.outcomes import (
    AuthorizeOutcome,
    AuthorizeToken,
    Connected,
    Failed,
    FlinksChallenge,
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
# A RequestId goes into a path (AuthorizeAsync/{requestId}): Flinks' are GUIDs.
_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9-]{1,64}")
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
        /Authorize and the OAuth call, which are repeated only when nothing was sent, and
        AuthorizeAsync (a read, repeated on any transient failure). `api_key` is sent as
        `x-api-key` to the async endpoint. `clock` (monotonic seconds) measures the operations'
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
        self._api_key = api_key
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
        if not _REQUEST_ID.fullmatch(request_id):
            raise ValueError("request_id must be letters, digits and dashes")
        headers = {"Accept": "application/json"}
        if self._api_key is not None:
            headers["x-api-key"] = self._api_key.get_secret_value()
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
            payload: object = json.loads(content)
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
