"""Settling a flow with Flinks: the call that decides it, run in the background under a lease;
the browser's bounded wait for it; following Flinks' 202s; taking over a flow whose holder died.

A Flinks call that decides a flow (a live or cached /Authorize, an MFA answer) runs in a task
this process owns (`TaskRegistry`), while the process holds the flow's lease in Redis and
renews it. The request that started it waits at most `authorize_wait` for the first outcome and
otherwise answers the flow as it is (`authorizing`); the task goes on and records the outcome.
While Flinks says "still working" (202, or a call that got no answer) the holder asks again
every `poll_interval` (AuthorizeAsync with the RequestId, else a cached /Authorize), for at most
`follow_limit`: never by sending a live /Authorize again.

When the holder dies, its lease runs out; the next status read anywhere takes the lease and the
flow over, and settles it the same way. Every write is a compare-and-set on the flow's version,
so a holder that lost its lease (a long pause) cannot overwrite what the new one recorded.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from app.clock import Clock
from app.errors import (
    AppError,
    Conflict,
    LoginOwnedElsewhere,
    ShuttingDown,
    StoreUnavailable,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from app.flinks import (
    AuthorizeOutcome,
    Connected,
    Failed,
    FlinksBadResponse,
    FlinksClient,
    FlinksError,
    FlinksRejected,
    FlinksTimeout,
    FlinksUnavailable,
    MfaRequired,
    Outcome,
    Pending,
    outcome_for_flinks_code,
)
from app.flows.mfa import QUESTION_AND_ANSWER
from app.flows.records import Challenge, FlowError, FlowRecord, OutboxEvent
from app.flows.tasks import TaskRegistry

if TYPE_CHECKING:
    from app.flows.links import Links
    from app.store import Lease, Store  # types only, as in service.py

log = logging.getLogger("app.flows")

FirstStep = Callable[[FlowRecord], Awaitable[FlowRecord]]


@dataclass(slots=True)
class _Holding:
    """The lease this task holds while it settles a flow. Its last write (any status but
    `pending`: the work ends there) lets the lease go in the same script, a round trip less
    than a release of its own; `letting_go` from just before it is sent, so that a renewal
    that finds the lease gone then is no alarm."""

    lease: Lease
    letting_go: bool = False
    released: bool = False


_holding: ContextVar[_Holding | None] = ContextVar("flow_holding", default=None)


@dataclass(frozen=True, slots=True)
class Timing:
    """`authorize_wait`: the longest a browser request waits for Flinks. `lease`: how long a
    holder's claim on a flow lasts unless renewed (renewed every third of it), so a flow whose
    holder died is taken over within about this long. `poll_interval` and `follow_limit`:
    Flinks asks for the async endpoint to be polled at most every 10 s, for up to 30 minutes."""

    authorize_wait: timedelta = timedelta(seconds=5)
    lease: timedelta = timedelta(seconds=20)
    poll_interval: timedelta = timedelta(seconds=10)
    follow_limit: timedelta = timedelta(minutes=30)


@dataclass(frozen=True, slots=True)
class Continuation:
    """What a flow keeps sealed to go on with Flinks: the RequestId of the session in progress,
    and the authorize token that produced its MFA challenge (None when there is none)."""

    request_id: str | None = field(default=None, repr=False)
    token: SecretStr | None = field(default=None, repr=False)


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


def _unconfirmed(exc: StoreUnavailable) -> StoreUnavailable:
    """Flinks answered but Redis could not take the outcome. The write may still land (a slow
    Redis applies it later): the caller is not told "failed", but to read the flow again, which
    then shows what really happened (a replica that takes the flow over asks Flinks again)."""
    return StoreUnavailable(
        "The outcome could not be confirmed. Read the flow's status again; do not start over.",
        headers={"Retry-After": "2"},
    )


def app_error(exc: FlinksError) -> AppError:
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


def _answer(waiting: asyncio.Future[FlowRecord | AppError], result: FlowRecord | AppError) -> None:
    if not waiting.done():
        waiting.set_result(result)


class FlowRunner:
    def __init__(
        self,
        store: Store,
        flinks: Callable[[], FlinksClient],
        timing: Timing,
        clock: Clock,
        tasks: TaskRegistry,
        links: Links,
    ) -> None:
        self.store = store
        self.links = links
        self._flinks = flinks
        self.timing = timing
        self._clock = clock
        self._tasks = tasks

    # -- leases and the background ------------------------------------------------------------

    def new_lease(self, flow_id: str) -> Lease:
        return self.store.new_lease(flow_id, self._clock.now(), self.timing.lease)

    def unsettled(self, flow: FlowRecord) -> bool:
        """Waiting for Flinks (a call in flight, or Flinks still working), and not expired."""
        return flow.status in ("authorizing", "pending") and flow.expires_at > self._clock.now()

    async def start(
        self, flow: FlowRecord, lease: Lease, first: FirstStep, *, wait: bool = True
    ) -> FlowRecord:
        """`flow` is claimed and `lease` held: `first(flow)` runs in a task of this process,
        then the flow is followed while Flinks is still working. Answers the flow as `first`
        left it (raising the AppError it raised), or as it is now once `authorize_wait` is up
        (at once without `wait`)."""
        if self._tasks.closed:
            await self._release(lease)
            raise ShuttingDown
        waiting: asyncio.Future[FlowRecord | AppError] = asyncio.get_running_loop().create_future()
        self._tasks.spawn(self._held(lease, self._settle(flow, first, waiting)), name="flow")
        seconds = self.timing.authorize_wait.total_seconds() if wait else 0.0
        timer = asyncio.ensure_future(self._clock.sleep(seconds))
        try:
            await asyncio.wait((waiting, timer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
        if not waiting.done():
            log.info("flow.answered_before_flinks", extra={"flow_id": flow.flow_id})
            return flow
        result = waiting.result()
        if isinstance(result, AppError):
            raise result
        return result

    async def take_over(self, flow: FlowRecord) -> FlowRecord:
        """A flow waiting for Flinks whose lease is free (its holder died, or stopped) is taken
        by this process, which asks Flinks and follows it as the holder would have."""
        lease = self.new_lease(flow.flow_id)
        if not await self.store.take_lease(lease, self._clock.now()):
            return flow
        try:
            current = await self.store.get_flow(flow.flow_id)
        except AppError:
            await self._release(lease)
            raise
        if current is None or not self.unsettled(current):
            await self._release(lease)
            return current or flow
        log.warning("flow.taken_over", extra={"flow_id": flow.flow_id, "status": current.status})
        # A pending flow asked about less than a poll interval ago waits for its turn in the
        # background; this read does not wait for it.
        due = current.status != "pending" or self._next_check(current) <= self._clock.now()
        return await self.start(current, lease, self._check_when_due, wait=due)

    async def _held(self, lease: Lease, work: Coroutine[Any, Any, None]) -> None:
        """Runs in a task of its own (`start`): the holding is this task's context."""
        holding = _Holding(lease)
        _holding.set(holding)
        renewing = asyncio.create_task(self._renew(holding), name="flow.lease")
        try:
            await work
        finally:
            renewing.cancel()
            await asyncio.gather(renewing, return_exceptions=True)
            if not holding.released:
                await self._release(lease)

    async def _renew(self, holding: _Holding) -> None:
        ttl, lease = self.timing.lease, holding.lease
        while True:
            await self._clock.sleep(ttl.total_seconds() / 3)
            try:
                kept = await self.store.renew_lease(replace(lease, until=self._clock.now() + ttl))
            except AppError:
                log.warning("flow.lease_not_renewed", extra={"flow_id": lease.flow_id})
                continue
            if not kept:
                if not holding.letting_go:
                    log.warning("flow.lease_lost", extra={"flow_id": lease.flow_id})
                return

    async def _release(self, lease: Lease) -> None:
        try:
            await self.store.release_lease(lease)
        except AppError:
            # It runs out on its own; another replica then takes the flow over.
            log.warning("flow.lease_not_released", extra={"flow_id": lease.flow_id})

    async def _settle(
        self,
        flow: FlowRecord,
        first: FirstStep,
        waiting: asyncio.Future[FlowRecord | AppError],
    ) -> None:
        try:
            settled = await first(flow)
        except AppError as exc:
            _answer(waiting, exc)
            return
        except asyncio.CancelledError:
            _answer(waiting, ShuttingDown())
            raise
        except Exception:
            _answer(waiting, AppError())
            raise
        _answer(waiting, settled)
        if settled.status == "pending":
            await self._follow(settled)

    # -- following Flinks ---------------------------------------------------------------------

    async def _follow(self, flow: FlowRecord) -> None:
        """Asks Flinks again every poll interval while the flow is pending, up to the limit."""
        while True:
            await self._sleep_until(self._next_check(flow))
            try:
                current = await self.store.get_flow(flow.flow_id)
                if current is None or current.status != "pending" or not self.unsettled(current):
                    return
                if self._past_follow_limit(current):
                    await self._record(current, outcome_for_flinks_code("SESSION_EXPIRED"))
                    return
                flow = await self.check(current)
            except StoreUnavailable:
                log.warning("flow.follow_store_unavailable", extra={"flow_id": flow.flow_id})
                flow = flow.model_copy(update={"checked_at": self._clock.now()})
            except Conflict:
                return  # someone else moved the flow on (it took the lease over)
            if flow.status != "pending":
                return

    async def _check_when_due(self, flow: FlowRecord) -> FlowRecord:
        if flow.status == "pending":
            await self._sleep_until(self._next_check(flow))
        return await self.check(flow)

    def _next_check(self, flow: FlowRecord) -> datetime:
        return (flow.checked_at or self._clock.now()) + self.timing.poll_interval

    def _past_follow_limit(self, flow: FlowRecord) -> bool:
        since = flow.pending_since or flow.checked_at
        return since is not None and self._clock.now() - since >= self.timing.follow_limit

    async def _sleep_until(self, when: datetime) -> None:
        seconds = (when - self._clock.now()).total_seconds()
        if seconds > 0:
            await self._clock.sleep(seconds)

    async def check(self, flow: FlowRecord) -> FlowRecord:
        """One question to Flinks about a flow whose outcome is not known: AuthorizeAsync with
        its RequestId when one is known, else a cached /Authorize with its loginId. A question
        that fails changes nothing but when it was asked: the flow stays pending."""
        request_id = self.continuation(flow).request_id
        flinks = self._flinks()
        try:
            if request_id is not None:
                outcome = await flinks.authorize_async(request_id=request_id)
            else:
                login_id = await self.store.get_login_id(flow.flow_id)
                if login_id is None:
                    return await self._record(flow, outcome_for_flinks_code("SESSION_EXPIRED"))
                outcome = await flinks.authorize_cached(login_id=login_id)
        except (FlinksError, ValueError) as exc:  # ValueError: a RequestId of no usable shape
            log.info(
                "flow.check_failed", extra={"flow_id": flow.flow_id, "error": type(exc).__name__}
            )
            return await self._still_pending(flow)
        return await self.record_outcome(flow, outcome)

    # -- recording outcomes ---------------------------------------------------------------------

    def calling(
        self, call: Callable[[], Awaitable[AuthorizeOutcome]], *, login_id: str | None = None
    ) -> FirstStep:
        """The first step of a claimed flow: `call`, and its outcome recorded. A Flinks failure
        that is an answer fails the flow (and is raised); no answer leaves it pending.
        `login_id`: the one the caller just bound to the flow, when it has it (saves reading
        it back to file the link)."""

        async def first(flow: FlowRecord) -> FlowRecord:
            try:
                outcome = await call()
            except FlinksError as exc:
                if not _outcome_unknown(exc):
                    raise await self.flinks_failed(flow, exc) from exc
                log.info(
                    "flow.outcome_unknown",
                    extra={"flow_id": flow.flow_id, "error": type(exc).__name__},
                )
                return await self._still_pending(flow)
            return await self.record_outcome(flow, outcome, login_id=login_id)

        return first

    def continuation(self, flow: FlowRecord) -> Continuation:
        if flow.sealed_upstream is None:
            return Continuation()
        opened = self.store.unseal(flow.sealed_upstream, flow.flow_id)
        if opened is None:
            return Continuation()
        values = json.loads(opened)
        token = values.get("token")
        return Continuation(values.get("request_id"), SecretStr(token) if token else None)

    def seal(self, flow_id: str, continuation: Continuation) -> str | None:
        if continuation.request_id is None:
            return None
        token = continuation.token.get_secret_value() if continuation.token else None
        plain = json.dumps({"request_id": continuation.request_id, "token": token})
        return self.store.seal(plain, flow_id)

    async def record_outcome(
        self, flow: FlowRecord, outcome: AuthorizeOutcome, *, login_id: str | None = None
    ) -> FlowRecord:
        flow_id = flow.flow_id
        if isinstance(outcome, Connected):
            if (
                flow.kind == "oauth"
                and outcome.institution
                and flow.institution
                and (outcome.institution.lower() != flow.institution.lower())
            ):
                log.warning("flow.institution_mismatch", extra={"flow_id": flow_id})
                return await self.record_failure(
                    flow, "institution_mismatch", "The bank that answered is not the one chosen."
                )
            institution = outcome.institution or flow.institution
            try:
                link_id = await self._make_link(flow, institution, outcome.request_id, login_id)
            except StoreUnavailable as exc:
                raise _unconfirmed(exc) from exc
            if link_id is None:
                return await self.record_failure(
                    flow, LoginOwnedElsewhere.code, LoginOwnedElsewhere.default_detail or ""
                )
            updated = flow.next(
                status="connected",
                institution=institution,
                challenges=(),
                sealed_upstream=None,
                pending_since=None,
                link_id=link_id or None,
            )
        elif isinstance(outcome, MfaRequired):
            updated = flow.next(
                status="mfa_required",
                institution=outcome.institution or flow.institution,
                challenges=tuple(
                    Challenge(
                        type=c.type or QUESTION_AND_ANSWER, prompt=c.prompt, choices=c.choices
                    )
                    for c in outcome.challenges
                ),
                attempt=flow.attempt + 1 if outcome.rejected else 1,
                sealed_upstream=self.seal(flow_id, Continuation(outcome.request_id, outcome.token)),
                pending_since=None,
            )
        elif isinstance(outcome, Pending):
            return await self._still_pending(flow, outcome.request_id)
        else:
            assert isinstance(outcome, Failed)  # noqa: S101
            return await self._record(flow, outcome.outcome)
        await self._save(flow, updated)
        log.info("flow.updated", extra={"flow_id": flow_id, "status": updated.status})
        return updated

    async def _make_link(
        self, flow: FlowRecord, institution: str | None, request_id: str, login_id: str | None
    ) -> str | None:
        """Files the connected loginId (`login_id`, or the flow's as stored) as a link of the
        flow's owner: its id, "" when the flow has no owner or loginId to file (a record from
        before links), None when the loginId turned out to be another owner's. The RequestId is
        kept for the first data read."""
        login_id = login_id or await self.store.get_login_id(flow.flow_id)
        if flow.owner is None or login_id is None:
            return ""
        link = await self.links.file(
            owner=flow.owner,
            login_id=login_id,
            institution=institution,
            flow_id=flow.flow_id,
            request_id=request_id,
            tag=flow.tag,
        )
        return None if link is None else link.link_id

    async def _still_pending(self, flow: FlowRecord, request_id: str | None = None) -> FlowRecord:
        """Flinks is (or may be) still working: pending, with the RequestId to follow if any."""
        now = self._clock.now()
        known = request_id or self.continuation(flow).request_id
        updated = flow.next(
            status="pending",
            challenges=(),
            checked_at=now,
            pending_since=flow.pending_since or now,
            sealed_upstream=self.seal(flow.flow_id, Continuation(known)),
        )
        await self._save(flow, updated)
        if flow.status != "pending":
            log.info("flow.updated", extra={"flow_id": flow.flow_id, "status": "pending"})
        return updated

    async def _record(self, flow: FlowRecord, outcome: Outcome) -> FlowRecord:
        return await self.record_failure(flow, outcome.code, outcome.message)

    async def flinks_failed(self, flow: FlowRecord, exc: FlinksError) -> AppError:
        """The flow fails with the code of the error met (flinks_unavailable, flinks_timeout,
        flinks_rejected); the AppError is returned for the caller to raise."""
        error = app_error(exc)
        await self.record_failure(flow, error.code, _FLINKS_FAILURE_WORDS[error.code])
        return error

    async def record_failure(self, flow: FlowRecord, code: str, message: str) -> FlowRecord:
        failed = flow.next(
            status="failed",
            error=FlowError(code=code, message=message),
            challenges=(),
            sealed_upstream=None,
            pending_since=None,
        )
        event = self.links.events.link_failed(failed, code=code, message=message)
        await self._save(flow, failed, event=event)
        self.links.events.written(event, flow.flow_id)
        log.info("flow.failed", extra={"flow_id": flow.flow_id, "code": code})
        return failed

    async def _save(
        self, expected: FlowRecord, updated: FlowRecord, *, event: OutboxEvent | None = None
    ) -> None:
        holding = _holding.get()
        if holding is not None and (
            holding.lease.flow_id != updated.flow_id or updated.status == "pending"
        ):
            holding = None  # not this task's flow, or not its last write
        if holding is not None:
            holding.letting_go = True
        try:
            saved = await self.store.replace_flow(
                expected.version,
                updated,
                event=event,
                release=holding.lease if holding is not None else None,
            )
        except StoreUnavailable as exc:
            if holding is not None:
                holding.letting_go = False
            raise _unconfirmed(exc) from exc
        if holding is not None:
            holding.letting_go = holding.released = saved
        if not saved:
            raise Conflict("The flow changed while it was being updated.")
