"""The domain: start a flow, consume OAuth state, complete with a loginId, authorize, MFA, status.

No HTTP framework, no raw httpx, no raw Redis commands: it speaks to `Store` and `FlinksClient`
and raises `app.errors` exceptions, which the API layer renders. The Flinks calls that decide a
flow run through `FlowRunner` (app/flows/runner.py): in the background, under a lease, with a
bounded wait for the browser.
"""

from __future__ import annotations

import logging
import re
import secrets
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Literal

from pydantic import SecretStr

from app.clock import Clock, SystemClock
from app.errors import (
    AppError,
    Conflict,
    FlowExpired,
    FlowNotFound,
    HandoffInvalid,
    LoginOwnedElsewhere,
    ReturnUrlNotAllowed,
    StateInvalid,
    UpstreamUnavailable,
    ValidationFailed,
)
from app.flinks import (
    AuthorizeOutcome,
    ConnectOptionError,
    FlinksClient,
    FlinksError,
    build_connect_url,
    outcome_for_oauth_error,
)
from app.flows import handoff
from app.flows.events import Events
from app.flows.links import LinkPolicy, Links
from app.flows.mfa import security_responses
from app.flows.records import (
    NATIVE_BINDING,
    FlowKind,
    FlowRecord,
    FlowStatus,
    Language,
    session_hash,
)
from app.flows.runner import Continuation, FlowRunner, Timing, app_error
from app.flows.tasks import TaskRegistry

if TYPE_CHECKING:
    # Only a type here: the store imports app.flows.records, so importing it at run time would
    # go round through this package's __init__.
    from app.store import Store


log = logging.getLogger("app.flows")

# Flinks: an authorize token lives 30 minutes (one page says 15; contract section 9).
TOKEN_LIFETIME = timedelta(minutes=30)
# `<flow_id>.<secret>`: the flow id says where the state is kept (its flow's hash slot, so the
# callback consumes it and reads the flow in one script, app/store.py).
STATE = re.compile(r"^[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{40}$")

ConnectAuthorize = Literal["cached", "live"]


@dataclass(frozen=True, slots=True)
class FlowConfig:
    """`connect_authorize`: how a Connect flow completes: `cached` (Flinks' documented
    follow-up, the person has just signed in inside the iframe) or `live` (a second sign-in at
    the bank, saved). OAuth flows are always live and saved. `timing`: the runner's waits."""

    connect_url: str
    connect_origin: str
    demo: bool
    return_urls: tuple[str, ...]
    oauth_redirect_uri: str
    institutions: tuple[str, ...]
    # Connect's redirectUrl is this + the flow id: the BFF's landing page (app/api/landing.py),
    # where a Connect that ignores jsRedirect brings the loginId. None: the flow's return URL.
    connect_landing_url: str | None = None
    connect_authorize: ConnectAuthorize = "cached"
    handoff_ttl: int = 120
    timing: Timing = field(default_factory=Timing)
    links: LinkPolicy = field(default_factory=LinkPolicy)


@dataclass(frozen=True, slots=True)
class MintedToken:
    token: SecretStr
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class ConnectSession:
    """`iframe_url` is None for a native app's flow: its Connect runs in the BFF's hosted page
    (app/flows/hosted.py), which mints its own token when the page opens."""

    flow: FlowRecord
    iframe_url: str | None
    connect_origin: str


@dataclass(frozen=True, slots=True)
class OAuthStart:
    flow: FlowRecord
    authorize_url: str


@dataclass(frozen=True, slots=True)
class StatusRead:
    """A flow's status, and whether this answer is the first to tell its owner that it
    connected (the owner's session is then rotated)."""

    flow: FlowRecord
    connected_now: bool


@dataclass(frozen=True, slots=True)
class CallbackResult:
    """Where the browser goes after the callback: the flow's own, allow-listed return URL, with
    the flow's status; or, for a native app's flow that got its loginId, the handoff code."""

    return_url: str
    flow_id: str
    status: FlowStatus
    error_code: str | None
    connected_now: bool = False
    handoff_code: str | None = field(default=None, repr=False)


def new_state(flow_id: str) -> str:
    """A fresh OAuth state for the flow (240 random bits): 63 characters of the URL-safe set.
    Flinks hands `state` back unchanged; the callback reads at most 64 (app/api/oauth.py)."""
    return f"{flow_id}.{secrets.token_urlsafe(30)}"


def _is_login_id(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower() and len(value) == 36
    except ValueError:
        return False


class Flows:
    def __init__(
        self,
        store: Store,
        flinks: FlinksClient | None,
        config: FlowConfig,
        *,
        clock: Clock | None = None,
        tasks: TaskRegistry | None = None,
        events: Events | None = None,
    ) -> None:
        """`tasks` owns the background calls (the app's lifespan closes it on shutdown);
        `events` makes the events out (none when left out)."""
        self.store = store
        self._clock = clock or SystemClock()
        self._flinks = flinks
        self.config = config
        self.tasks = tasks if tasks is not None else TaskRegistry()
        self.links = Links(store, lambda: self.flinks, config.links, self._clock, events)
        self.runner = FlowRunner(
            store, lambda: self.flinks, config.timing, self._clock, self.tasks, self.links
        )

    @property
    def clock(self) -> Clock:
        return self._clock

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
            raise app_error(exc) from exc
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
        code_challenge: str | None = None,
    ) -> ConnectSession:
        """`code_challenge` (checked, S256): a native app's flow, which needs its return URL
        and completes through the hosted page and a handoff code; no token is minted here."""
        return_url = self._checked_return_url(return_url)
        if code_challenge is not None and return_url is None:
            raise ValidationFailed("A native app's flow needs its return_url.")
        # Validate the options before anything is minted or stored.
        build = self._connect_url_builder(language, return_url, tag, options)
        minted = await self.mint_token() if code_challenge is None else None
        flow = self._new_flow(
            kind="connect", session=session, language=language, return_url=return_url, tag=tag
        ).model_copy(update={"code_challenge": code_challenge})
        await self.store.create_flow(flow)
        iframe_url = build(minted.token, flow.flow_id) if minted is not None else None
        return ConnectSession(flow, iframe_url, self.config.connect_origin)

    def _connect_url_builder(
        self,
        language: Language,
        return_url: str | None,
        tag: str | None,
        options: Mapping[str, object],
    ) -> _ConnectUrlBuilder:
        builder = _ConnectUrlBuilder(self.config, language, return_url, tag, options)
        builder(SecretStr("validation-only"), "validation-only")
        return builder

    async def complete_connect(
        self,
        *,
        session: str | None,
        flow_id: str,
        login_id: str,
        institution: str | None,
    ) -> StatusRead:
        """Binds Connect's loginId to the flow once and authorizes it: a cached /Authorize by
        default (the person has just signed in inside the iframe), or live and saved."""
        if not _is_login_id(login_id):
            raise ValidationFailed("login_id must be the UUID Flinks Connect sent.")
        flow = await self._owned_flow(session, flow_id, kind="connect")
        if flow.code_challenge is not None:
            raise Conflict("A native app's flow completes through its handoff code.")
        if flow.status == "started":
            await self._claim_login(flow, login_id)
            call = self._authorize_call(flow, login_id)
            claimed = flow.next(
                status="authorizing",
                institution=institution or flow.institution,
                checked_at=self._clock.now(),
            )
            lease = self.runner.new_lease(flow_id)
            if await self.store.replace_flow(flow.version, claimed, login_id=login_id, lease=lease):
                return await self._told(
                    await self.runner.start(
                        claimed, lease, self.runner.calling(call, login_id=login_id)
                    )
                )
        return await self._replayed_complete(session, flow_id, login_id)

    async def _replayed_complete(
        self, session: str | None, flow_id: str, login_id: str
    ) -> StatusRead:
        """A second `complete` with the flow's own loginId (a retry after a lost answer, a double
        submit) gets the flow's current status and causes no new Flinks call; another loginId is
        a conflict."""
        bound = await self.store.get_login_id(flow_id)
        if bound is None or not secrets.compare_digest(bound.lower(), login_id.lower()):
            raise Conflict("This flow already has a loginId.")
        return await self.status(session=session, flow_id=flow_id)

    # -- OAuth -----------------------------------------------------------------------------

    async def start_oauth(
        self,
        *,
        session: str,
        institution: str,
        return_url: str | None,
        language: Language,
        tag: str | None = None,
        code_challenge: str | None = None,
    ) -> OAuthStart:
        """`code_challenge` (checked, S256): a native app's flow, whose state is bound to the
        challenge rather than to this caller's browser session (app/flows/handoff.py)."""
        return_url = self._checked_return_url(return_url) or self.config.return_urls[0]
        if institution not in self.config.institutions:
            raise ValidationFailed("institution is not one this service links.")
        flow = self._new_flow(
            kind="oauth",
            session=session,
            language=language,
            institution=institution,
            return_url=return_url,
            tag=tag,
        ).model_copy(update={"code_challenge": code_challenge})
        state = new_state(flow.flow_id)
        binding = NATIVE_BINDING if code_challenge is not None else session
        await self.store.create_flow(flow, state=state, session=binding)
        try:
            location = await self.flinks.oauth_authorize_location(
                institution=institution,
                redirect_uri=self.config.oauth_redirect_uri,
                state=state,
                language=language,
                tag=tag,
            )
        except FlinksError as exc:
            raise await self.runner.flinks_failed(flow, exc) from exc
        return OAuthStart(flow, location)

    async def oauth_callback(
        self,
        *,
        session: str | None,
        state: str | None,
        login_id: str | None,
        error: str | None,
    ) -> CallbackResult:
        # Nothing reaches Flinks until the state is consumed, bound to this browser's session
        # (or, for a native app's flow, to its PKCE challenge: the system browser has no cookie).
        if not state or not STATE.fullmatch(state):
            raise StateInvalid
        # The state consumed and its flow read in one step; this browser's binding first.
        bindings = (session, NATIVE_BINDING) if session else (NATIVE_BINDING,)
        consumed = await self.store.consume_state(state, bindings)
        if consumed is None:
            raise StateInvalid
        binding, flow = consumed
        native = binding == NATIVE_BINDING
        if flow is None or flow.kind != "oauth" or flow.awaiting_handoff:
            raise StateInvalid
        if not (flow.code_challenge is not None if native else flow.owned_by(session)):
            raise StateInvalid
        if flow.status != "started" or self._expired(flow):
            raise StateInvalid
        if error is not None or login_id is None or not _is_login_id(login_id):
            outcome = outcome_for_oauth_error(error) if error is not None else None
            code = outcome.code if outcome else "invalid_callback"
            message = outcome.message if outcome else "The bank's answer could not be used."
            failed = await self.runner.record_failure(flow, code, message)
            return self._callback_result(StatusRead(failed, connected_now=False))
        if native:
            code = await self.issue_handoff(flow, login_id)
            return replace(self._callback_result(StatusRead(flow, False)), handoff_code=code)
        await self._claim_login(flow, login_id)
        # Flinks configured?
        live = self.runner.calling(self._authorize_call(flow, login_id), login_id=login_id)
        flow_id = flow.flow_id
        claimed = flow.next(status="authorizing", checked_at=self._clock.now())
        lease = self.runner.new_lease(flow_id)
        if not await self.store.replace_flow(flow.version, claimed, login_id=login_id, lease=lease):
            raise StateInvalid
        try:
            result = await self.runner.start(claimed, lease, live)
        except AppError:
            result = await self.store.get_flow(flow_id) or claimed
        return self._callback_result(await self._told(result))

    def _callback_result(self, read: StatusRead) -> CallbackResult:
        flow = read.flow
        assert flow.return_url is not None  # noqa: S101 - OAuth flows always have one
        return CallbackResult(
            return_url=flow.return_url,
            flow_id=flow.flow_id,
            status=flow.status,
            error_code=flow.error.code if flow.error else None,
            connected_now=read.connected_now,
        )

    # -- native apps: the handoff ------------------------------------------------------------

    async def issue_handoff(self, flow: FlowRecord, login_id: str) -> str:
        """Seals the loginId into a native flow and makes its one-time handoff code (no Flinks
        call yet: that waits for the app, which alone holds the PKCE verifier)."""
        waiting = flow.next(awaiting_handoff=True, checked_at=self._clock.now())
        if not await self.store.replace_flow(flow.version, waiting, login_id=login_id):
            raise StateInvalid
        code = handoff.new_code()
        await self.store.put_handoff(flow.flow_id, handoff.code_hash(code), self.config.handoff_ttl)
        log.info("flow.handoff_issued", extra={"flow_id": flow.flow_id})
        return code

    async def redeem_handoff(
        self, *, session: str | None, flow_id: str, code: str, verifier: str
    ) -> StatusRead:
        """The app's half: the code (single use, unexpired, this flow's), S256(verifier) equal
        to the flow's challenge and the caller its owner, all checked and the flow claimed in one
        atomic step; only then the loginId's ownership and the /Authorize (live and saved for
        OAuth; as configured for Connect). Any refusal is `handoff_invalid`."""
        flow = await self.store.get_flow(flow_id)
        refused = (
            flow is None
            or flow.code_challenge is None
            or not flow.awaiting_handoff
            or self._expired(flow)
            or not handoff.CODE.fullmatch(code)
        )
        if refused or flow is None:
            log.warning("security.handoff_refused", extra={"flow_id": flow_id})
            raise HandoffInvalid
        claimed = flow.next(
            status="authorizing", awaiting_handoff=False, checked_at=self._clock.now()
        )
        lease = self.runner.new_lease(flow_id)
        redeemed = await self.store.redeem_handoff(
            flow,
            code_hash=handoff.code_hash(code),
            # A code that matches is burnt whatever else is wrong: a malformed verifier or no
            # caller goes through the script too, as a value no flow holds.
            challenge=handoff.verifier_challenge(verifier),
            owner_hash=session_hash(session) if session is not None else "",
            claimed=claimed,
            lease=lease,
        )
        if not redeemed:
            log.warning("security.handoff_refused", extra={"flow_id": flow_id})
            raise HandoffInvalid
        login_id = await self.store.get_login_id(flow_id)
        if login_id is None:
            await self.runner.record_failure(claimed, "handoff_invalid", "The link expired.")
            raise HandoffInvalid
        await self._claim_login(claimed, login_id)
        call = self.runner.calling(self._authorize_call(flow, login_id), login_id=login_id)
        return await self._told(await self.runner.start(claimed, lease, call))

    def _authorize_call(
        self, flow: FlowRecord, login_id: str
    ) -> Callable[[], Awaitable[AuthorizeOutcome]]:
        """The /Authorize that decides a flow with its loginId: OAuth always live and saved;
        Connect cached (the person has just signed in inside the iframe) unless configured
        live (FLINKS_CONNECT_AUTHORIZE)."""
        flinks = self.flinks
        if flow.kind == "connect" and self.config.connect_authorize == "cached":
            return partial(flinks.authorize_cached, login_id=login_id)
        return partial(
            flinks.authorize_live, login_id=login_id, language=flow.language, tag=flow.tag
        )

    async def _claim_login(self, flow: FlowRecord, login_id: str) -> None:
        """The loginId becomes the flow owner's, unless another owner has it: then the flow
        fails (`login_owned_elsewhere`, no /Authorize) and so does this request (409)."""
        owner = flow.owner
        if owner is None:  # a flow recorded before owners were
            return
        try:
            await self.links.reserve(owner=owner, login_id=login_id, flow_id=flow.flow_id)
        except LoginOwnedElsewhere:
            await self.runner.record_failure(
                flow, LoginOwnedElsewhere.code, LoginOwnedElsewhere.default_detail or ""
            )
            raise

    # -- status and MFA ----------------------------------------------------------------------

    async def status(self, *, session: str | None, flow_id: str) -> StatusRead:
        """The flow as it stands. A flow still waiting for Flinks whose holder is gone (its
        lease ran out) is taken over by this read, which asks Flinks."""
        flow = await self._owned_flow(session, flow_id, allow_expired=True)
        if self.runner.unsettled(flow):
            flow = await self.runner.take_over(flow)
        return await self._told(flow)

    async def answer_mfa(
        self,
        *,
        session: str | None,
        flow_id: str,
        responses: Mapping[str, Sequence[str]],
    ) -> StatusRead:
        """Checks the answers against the flow's challenges, per type (422 naming the prompt,
        before anything is sent), and sends them to Flinks with the same RequestId."""
        flow = await self._owned_flow(session, flow_id)
        if flow.status != "mfa_required" or flow.sealed_upstream is None:
            raise Conflict("This flow is not waiting for MFA answers.")
        security = security_responses(flow.challenges, responses)
        continuation = self.runner.continuation(flow)
        request_id = continuation.request_id
        if request_id is None:
            raise Conflict("This MFA challenge can no longer be answered; start again.")
        flinks = self.flinks
        claimed = flow.next(
            status="authorizing",
            # Kept so that a replica taking over can ask Flinks where this RequestId stands.
            sealed_upstream=self.runner.seal(flow_id, Continuation(request_id)),
            challenges=(),
            checked_at=self._clock.now(),
        )
        lease = self.runner.new_lease(flow_id)
        if not await self.store.replace_flow(flow.version, claimed, lease=lease):
            raise Conflict("These MFA answers were already sent.")
        answer = self.runner.calling(
            partial(
                flinks.answer_mfa,
                token=continuation.token,
                request_id=request_id,
                responses=security,
            )
        )
        return await self._told(await self.runner.start(claimed, lease, answer))

    async def _told(self, flow: FlowRecord) -> StatusRead:
        """The flow as its owner is told it; the first answer that says "connected" is marked
        (only that one rotates the owner's session)."""
        if flow.status != "connected" or flow.reported:
            return StatusRead(flow, connected_now=False)
        reported = flow.next(reported=True)
        if await self.store.replace_flow(flow.version, reported):
            return StatusRead(reported, connected_now=True)
        return StatusRead(flow, connected_now=False)

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

    def __call__(self, token: SecretStr, flow_id: str) -> str:
        redirect_url, allowed = self.return_url, self.config.return_urls
        if self.config.connect_landing_url is not None:
            redirect_url = self.config.connect_landing_url + flow_id
            allowed = (*allowed, redirect_url)
        try:
            return build_connect_url(
                self.config.connect_url,
                authorize_token=token.get_secret_value(),
                demo=self.config.demo,
                language=self.language,
                redirect_url=redirect_url,
                allowed_redirect_urls=allowed,
                tag=self.tag,
                options=self.options,
            )
        except ConnectOptionError as exc:
            raise ValidationFailed(str(exc)) from exc
