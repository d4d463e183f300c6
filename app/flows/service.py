"""The domain: start a flow, consume OAuth state, complete with a loginId, authorize, MFA, status.

No HTTP framework, no raw httpx, no raw Redis commands: it speaks to `Store` and `FlinksClient`
and raises `app.errors` exceptions, which the API layer renders.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import SecretStr

from app.clock import Clock, SystemClock
from app.errors import (
    AppError,
    Conflict,
    FlowExpired,
    FlowNotFound,
    ReturnUrlNotAllowed,
    StateInvalid,
    StoreUnavailable,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
    ValidationFailed,
)
from app.flinks import (
    AuthorizeOutcome,
    Connected,
    ConnectOptionError,
    Failed,
    FlinksBadResponse,
    FlinksClient,
    FlinksError,
    FlinksRejected,
    FlinksTimeout,
    FlinksUnavailable,
    MfaRequired,
    Pending,
    build_connect_url,
    outcome_for_oauth_error,
)
from app.flows.records import (
    Challenge,
    FlowError,
    FlowKind,
    FlowRecord,
    FlowStatus,
    Language,
)

if TYPE_CHECKING:
    # Only a type here: the store imports app.flows.records, so importing it at run time would
    # go round through this package's __init__.
    from app.store import Store

log = logging.getLogger("app.flows")

# Flinks: an authorize token lives 30 minutes (one page says 15; contract section 9).
TOKEN_LIFETIME = timedelta(minutes=30)
STATE = re.compile(r"^[A-Za-z0-9_-]{43}$")
# A pending flow's status read asks Flinks again at most this often.
PENDING_RECHECK = timedelta(seconds=5)


@dataclass(frozen=True, slots=True)
class FlowConfig:
    connect_url: str
    connect_origin: str
    demo: bool
    return_urls: tuple[str, ...]
    oauth_redirect_uri: str
    institutions: tuple[str, ...]
    pending_recheck: timedelta = PENDING_RECHECK
    # Longer than any live /Authorize may take: an `authorizing` flow older than this lost its
    # answer, and a status read asks Flinks.
    authorizing_stale: timedelta = timedelta(seconds=90)


@dataclass(frozen=True, slots=True)
class MintedToken:
    token: SecretStr
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class ConnectSession:
    flow: FlowRecord
    iframe_url: str
    connect_origin: str


@dataclass(frozen=True, slots=True)
class OAuthStart:
    flow: FlowRecord
    authorize_url: str


@dataclass(frozen=True, slots=True)
class StatusRead:
    """A flow's status, and whether this read is what connected it (a pending flow re-checked)."""

    flow: FlowRecord
    connected_now: bool


@dataclass(frozen=True, slots=True)
class CallbackResult:
    """Where the browser goes after the callback: the flow's own, allow-listed return URL."""

    return_url: str
    flow_id: str
    status: FlowStatus
    error_code: str | None


def _is_login_id(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower() and len(value) == 36
    except ValueError:
        return False


_FLINKS_FAILURE_WORDS = {
    UpstreamUnavailable.code: "Flinks could not be reached.",
    UpstreamTimeout.code: "Flinks did not answer in time.",
    UpstreamRejected.code: "Flinks refused the request.",
}


def _outcome_unknown(exc: FlinksError) -> bool:
    """Sent, and no HTTP answer came back (timed out, connection dropped)."""
    answered = isinstance(exc, (FlinksUnavailable, FlinksRejected, FlinksBadResponse)) and (
        exc.status is not None
    )
    return (
        exc.may_have_been_sent
        and not answered
        and isinstance(exc, (FlinksTimeout, FlinksUnavailable))
    )


def _app_error(exc: FlinksError) -> AppError:
    if isinstance(exc, FlinksTimeout):
        return UpstreamTimeout()
    if isinstance(exc, FlinksUnavailable):
        headers = {"Retry-After": str(round(exc.retry_after))} if exc.retry_after else None
        return UpstreamUnavailable(headers=headers)
    if isinstance(exc, FlinksRejected):
        return UpstreamRejected(flinks_code=exc.flinks_code)
    if isinstance(exc, FlinksBadResponse):
        return UpstreamRejected("Flinks answered with something the BFF could not use.")
    return UpstreamUnavailable()


class Flows:
    def __init__(
        self,
        store: Store,
        flinks: FlinksClient | None,
        config: FlowConfig,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.store = store
        self._clock = clock or SystemClock()
        self._flinks = flinks
        self.config = config

    @property
    def flinks(self) -> FlinksClient:
        if self._flinks is None:
            raise UpstreamUnavailable("Flinks is not configured (FLINKS_CUSTOMER_ID, ...).")
        return self._flinks

    # -- tokens ----------------------------------------------------------------------------

    async def mint_token(self) -> MintedToken:
        try:
            token = await self.flinks.generate_authorize_token()
        except FlinksError as exc:
            raise _app_error(exc) from exc
        return MintedToken(token.value, token.minted_at + TOKEN_LIFETIME)

    # -- Connect ---------------------------------------------------------------------------

    def _checked_return_url(self, return_url: str | None) -> str | None:
        if return_url is not None and return_url not in self.config.return_urls:
            raise ReturnUrlNotAllowed
        return return_url

    async def start_connect(
        self,
        *,
        session: str,
        language: Language,
        return_url: str | None,
        tag: str | None,
        options: Mapping[str, object],
    ) -> ConnectSession:
        return_url = self._checked_return_url(return_url)
        # Validate the options before anything is minted or stored.
        build = self._connect_url_builder(language, return_url, tag, options)
        minted = await self.mint_token()
        flow = self._new_flow(
            kind="connect", session=session, language=language, return_url=return_url, tag=tag
        )
        await self.store.create_flow(flow)
        return ConnectSession(flow, build(minted.token), self.config.connect_origin)

    def _connect_url_builder(
        self,
        language: Language,
        return_url: str | None,
        tag: str | None,
        options: Mapping[str, object],
    ) -> _ConnectUrlBuilder:
        builder = _ConnectUrlBuilder(self.config, language, return_url, tag, options)
        builder(SecretStr("validation-only"))
        return builder

    async def complete_connect(
        self,
        *,
        session: str | None,
        flow_id: str,
        login_id: str,
        institution: str | None,
    ) -> FlowRecord:
        if not _is_login_id(login_id):
            raise ValidationFailed("login_id must be the UUID Flinks Connect sent.")
        flow = await self._owned_flow(session, flow_id, kind="connect")
        if flow.status == "started":
            claimed = flow.next(
                status="authorizing",
                institution=institution or flow.institution,
                checked_at=self._clock.now(),
            )
            if await self.store.replace_flow(flow.version, claimed, login_id=login_id):
                return await self._authorize(claimed, login_id)
        return await self._replayed_complete(session, flow_id, login_id)

    async def _replayed_complete(
        self, session: str | None, flow_id: str, login_id: str
    ) -> FlowRecord:
        """A second `complete` with the flow's own loginId (a retry after a lost answer, a double
        submit) gets the flow's current status and causes no Flinks call; another loginId is a
        conflict."""
        bound = await self.store.get_login_id(flow_id)
        if bound is None or not secrets.compare_digest(bound.lower(), login_id.lower()):
            raise Conflict("This flow already has a loginId.")
        return (await self.status(session=session, flow_id=flow_id)).flow

    # -- OAuth -----------------------------------------------------------------------------

    async def start_oauth(
        self,
        *,
        session: str,
        institution: str,
        return_url: str | None,
        language: Language,
        tag: str | None = None,
    ) -> OAuthStart:
        return_url = self._checked_return_url(return_url) or self.config.return_urls[0]
        if institution not in self.config.institutions:
            raise ValidationFailed("institution is not one this service links.")
        state = secrets.token_urlsafe(32)
        flow = self._new_flow(
            kind="oauth",
            session=session,
            language=language,
            institution=institution,
            return_url=return_url,
            tag=tag,
        )
        await self.store.create_flow(flow, state=state, session=session)
        try:
            location = await self.flinks.oauth_authorize_location(
                institution=institution,
                redirect_uri=self.config.oauth_redirect_uri,
                state=state,
                language=language,
                tag=tag,
            )
        except FlinksError as exc:
            raise await self._flinks_failed(flow, exc) from exc
        return OAuthStart(flow, location)

    async def oauth_callback(
        self,
        *,
        session: str | None,
        state: str | None,
        login_id: str | None,
        error: str | None,
    ) -> CallbackResult:
        # Nothing reaches Flinks until the state is consumed, bound to this browser's session.
        if not session or not state or not STATE.fullmatch(state):
            raise StateInvalid
        flow_id = await self.store.consume_state(state, session)
        if flow_id is None:
            raise StateInvalid
        flow = await self.store.get_flow(flow_id)
        if flow is None or not flow.owned_by(session) or flow.kind != "oauth":
            raise StateInvalid
        if flow.status != "started" or self._expired(flow):
            raise StateInvalid
        if error is not None or login_id is None or not _is_login_id(login_id):
            outcome = outcome_for_oauth_error(error) if error is not None else None
            code = outcome.code if outcome else "invalid_callback"
            message = outcome.message if outcome else "The bank's answer could not be used."
            failed = await self._record_failure(flow, code, message)
            return self._callback_result(failed)
        claimed = flow.next(status="authorizing", checked_at=self._clock.now())
        if not await self.store.replace_flow(flow.version, claimed, login_id=login_id):
            raise StateInvalid
        try:
            result = await self._authorize(claimed, login_id)
        except AppError:
            result = await self.store.get_flow(flow_id) or claimed
        return self._callback_result(result)

    def _callback_result(self, flow: FlowRecord) -> CallbackResult:
        assert flow.return_url is not None  # noqa: S101 - OAuth flows always have one
        return CallbackResult(
            return_url=flow.return_url,
            flow_id=flow.flow_id,
            status=flow.status,
            error_code=flow.error.code if flow.error else None,
        )

    # -- status and MFA ----------------------------------------------------------------------

    async def status(self, *, session: str | None, flow_id: str) -> StatusRead:
        flow = await self._owned_flow(session, flow_id, allow_expired=True)
        if self._outcome_to_check(flow):
            checked = await self._recheck_pending(flow)
            return StatusRead(checked, connected_now=checked.status == "connected")
        return StatusRead(flow, connected_now=False)

    async def answer_mfa(
        self,
        *,
        session: str | None,
        flow_id: str,
        responses: Mapping[str, Sequence[str]],
    ) -> FlowRecord:
        flow = await self._owned_flow(session, flow_id)
        if flow.status != "mfa_required" or flow.sealed_upstream is None:
            raise Conflict("This flow is not waiting for MFA answers.")
        prompts = {challenge.prompt for challenge in flow.challenges}
        if set(responses) != prompts:
            raise ValidationFailed("Answer every challenge of this flow, by its prompt.")
        upstream = self.store.unseal(flow.sealed_upstream, flow.flow_id)
        if upstream is None:
            raise Conflict("This MFA challenge can no longer be answered; start again.")
        continuation = json.loads(upstream)
        claimed = flow.next(
            status="authorizing",
            sealed_upstream=None,
            challenges=(),
            checked_at=self._clock.now(),
        )
        if not await self.store.replace_flow(flow.version, claimed):
            raise Conflict("These MFA answers were already sent.")
        try:
            outcome = await self.flinks.answer_mfa(
                token=SecretStr(continuation["token"]),
                request_id=continuation["request_id"],
                responses=responses,
            )
        except FlinksError as exc:
            return await self._flinks_failed_or_unknown(claimed, exc)
        return await self._record_outcome(claimed, outcome)

    # -- shared steps ------------------------------------------------------------------------

    def _new_flow(
        self,
        *,
        kind: FlowKind,
        session: str,
        language: Language,
        institution: str | None = None,
        return_url: str | None = None,
        tag: str | None = None,
    ) -> FlowRecord:
        return FlowRecord.new(
            kind=kind,
            session=session,
            language=language,
            now=self._clock.now(),
            lifetime=timedelta(seconds=self.store.flow_ttl),
            institution=institution,
            return_url=return_url,
            tag=tag,
        )

    def _expired(self, flow: FlowRecord) -> bool:
        return flow.expires_at <= self._clock.now()

    def _outcome_to_check(self, flow: FlowRecord) -> bool:
        """Pending at Flinks, or left `authorizing` longer than any call takes (the answer was
        lost: the process died, or the store failed as it saved it). Either way Flinks knows."""
        if self._expired(flow):
            return False
        if flow.status == "pending":
            return True
        return (
            flow.status == "authorizing"
            and flow.checked_at is not None
            and self._clock.now() - flow.checked_at >= self.config.authorizing_stale
        )

    async def _owned_flow(
        self,
        session: str | None,
        flow_id: str,
        *,
        kind: FlowKind | None = None,
        allow_expired: bool = False,
    ) -> FlowRecord:
        flow = await self.store.get_flow(flow_id)
        if flow is None or not flow.owned_by(session) or (kind and flow.kind != kind):
            raise FlowNotFound
        if not allow_expired and self._expired(flow):
            raise FlowExpired
        return flow

    async def _authorize(self, flow: FlowRecord, login_id: str) -> FlowRecord:
        """Live /Authorize with Save=true: sent at most once for this flow (the CAS claimed it)."""
        try:
            outcome = await self.flinks.authorize_live(
                login_id=login_id, language=flow.language, tag=flow.tag
            )
        except FlinksError as exc:
            return await self._flinks_failed_or_unknown(flow, exc)
        return await self._record_outcome(flow, outcome)

    async def _flinks_failed_or_unknown(self, flow: FlowRecord, exc: FlinksError) -> FlowRecord:
        """A call that reached Flinks and got no answer may still succeed there: the flow is
        `pending` and status reads ask Flinks (cached /Authorize). Anything else fails it."""
        if not _outcome_unknown(exc):
            raise await self._flinks_failed(flow, exc) from exc
        updated = flow.next(status="pending", checked_at=self._clock.now())
        await self._save(flow, updated)
        log.info(
            "flow.outcome_unknown", extra={"flow_id": flow.flow_id, "error": type(exc).__name__}
        )
        return updated

    async def _recheck_pending(self, flow: FlowRecord) -> FlowRecord:
        now = self._clock.now()
        if flow.checked_at and now - flow.checked_at < self.config.pending_recheck:
            return flow
        login_id = await self.store.get_login_id(flow.flow_id)
        claimed = flow.next(checked_at=now)
        # Only one reader re-checks: whoever wins the CAS; the others see the current state.
        if login_id is None or not await self.store.replace_flow(flow.version, claimed):
            return flow
        try:
            outcome = await self.flinks.authorize_cached(login_id=login_id)
        except FlinksError:
            log.info("flow.pending_recheck_failed", extra={"flow_id": flow.flow_id})
            return claimed
        return await self._record_outcome(claimed, outcome)

    async def _record_outcome(self, flow: FlowRecord, outcome: AuthorizeOutcome) -> FlowRecord:
        if isinstance(outcome, Connected):
            if (
                flow.kind == "oauth"
                and outcome.institution
                and flow.institution
                and (outcome.institution.lower() != flow.institution.lower())
            ):
                log.warning("flow.institution_mismatch", extra={"flow_id": flow.flow_id})
                return await self._record_failure(
                    flow, "institution_mismatch", "The bank that answered is not the one chosen."
                )
            updated = flow.next(
                status="connected",
                institution=outcome.institution or flow.institution,
                challenges=(),
                sealed_upstream=None,
            )
        elif isinstance(outcome, MfaRequired):
            sealed = self.store.seal(
                json.dumps(
                    {"token": outcome.token.get_secret_value(), "request_id": outcome.request_id}
                ),
                flow.flow_id,
            )
            updated = flow.next(
                status="mfa_required",
                institution=outcome.institution or flow.institution,
                challenges=tuple(
                    Challenge(type=c.type or "QuestionAndAnswer", prompt=c.prompt)
                    for c in outcome.challenges
                ),
                sealed_upstream=sealed,
            )
        elif isinstance(outcome, Pending):
            updated = flow.next(status="pending", checked_at=self._clock.now())
        else:
            assert isinstance(outcome, Failed)  # noqa: S101
            return await self._record_failure(flow, outcome.outcome.code, outcome.outcome.message)
        await self._save(flow, updated)
        log.info("flow.updated", extra={"flow_id": flow.flow_id, "status": updated.status})
        return updated

    async def _flinks_failed(self, flow: FlowRecord, exc: FlinksError) -> AppError:
        """The flow fails with the code of the error met (flinks_unavailable, flinks_timeout,
        flinks_rejected); the AppError is returned for the caller to raise."""
        error = _app_error(exc)
        await self._record_failure(flow, error.code, _FLINKS_FAILURE_WORDS[error.code])
        return error

    async def _record_failure(self, flow: FlowRecord, code: str, message: str) -> FlowRecord:
        failed = flow.next(
            status="failed",
            error=FlowError(code=code, message=message),
            challenges=(),
            sealed_upstream=None,
        )
        await self._save(flow, failed)
        log.info("flow.failed", extra={"flow_id": flow.flow_id, "code": code})
        return failed

    async def _save(self, expected: FlowRecord, updated: FlowRecord) -> None:
        try:
            saved = await self.store.replace_flow(expected.version, updated)
        except StoreUnavailable as exc:
            # The write may still land (a slow Redis applies it later): the caller is not told
            # "failed", but to read the flow again, which then shows what really happened.
            raise StoreUnavailable(
                "The outcome could not be confirmed. Read the flow's status again; do not start "
                "over.",
                headers={"Retry-After": "2"},
            ) from exc
        if not saved:
            raise Conflict("The flow changed while it was being updated.")


class _ConnectUrlBuilder:
    """Validated Connect parameters, waiting for the token that completes the iframe URL."""

    def __init__(
        self,
        config: FlowConfig,
        language: Language,
        return_url: str | None,
        tag: str | None,
        options: Mapping[str, object],
    ) -> None:
        self.config = config
        self.language = language
        self.return_url = return_url
        self.tag = tag
        self.options = dict(options)

    def __call__(self, token: SecretStr) -> str:
        try:
            return build_connect_url(
                self.config.connect_url,
                authorize_token=token.get_secret_value(),
                demo=self.config.demo,
                language=self.language,
                redirect_url=self.return_url,
                allowed_redirect_urls=self.config.return_urls,
                tag=self.tag,
                options=self.options,
            )
        except ConnectOptionError as exc:
            raise ValidationFailed(str(exc)) from exc
