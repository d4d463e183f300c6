"""The /Authorize state machine, shared by the API, the Connect page and the OAuth bank page."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from app.sandbox import payloads as p
from app.sandbox.challenges import TEXT_OR_CALL, Challenge, Verdict
from app.sandbox.state import (
    AuthSession,
    Background,
    Card,
    Purpose,
    SandboxState,
    SessionStatus,
)
from app.sandbox.users import BankUser, Behaviour, check_credentials
from app.sandbox.webhooks import Webhooks

# Wrong answers a sign-in may give under wrong_answer=new_challenge before it ends.
MAX_WRONG_ANSWERS = 3
_SLOW = (Behaviour.DISPATCHED, Behaviour.SLOW)
# Codes the control API may end dispatched work with, and their HTTP status (contract 8).
FAILURE_STATUS = {
    "RETRY_LATER": 401,
    "DISABLED_LOGIN": 401,
    "INVALID_LOGIN": 401,
    "UNAUTHORIZED": 401,
    "NEW_ACCOUNT": 401,
    "SESSION_EXPIRED": 401,
    "DISABLED_INSTITUTION": 405,
    "AGGREGATION_ERROR": 500,
}


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int
    body: p.JSON
    session: AuthSession | None = None
    card: Card | None = None
    # Seconds the bank takes before this answer can be sent (a slow bank's live /Authorize).
    hold_seconds: float = 0.0

    @property
    def flinks_code(self) -> str | None:
        code = self.body.get("FlinksCode")
        return code if isinstance(code, str) else None

    @property
    def request_id(self) -> str | None:
        value = self.body.get("RequestId")
        return value if isinstance(value, str) else None

    @property
    def challenges(self) -> list[p.JSON]:
        found = self.body.get("SecurityChallenges")
        return found if isinstance(found, list) else []


class Authorizer:
    def __init__(self, state: SandboxState, webhooks: Webhooks | None = None) -> None:
        self.state = state
        self.webhooks = webhooks

    def with_credentials(
        self,
        customer_id: str,
        username: str,
        password: str,
        *,
        purpose: Purpose,
        language: str = "en",
        save: bool = False,
        tag: str | None = None,
        schedule_refresh: bool = False,
    ) -> Outcome:
        user = check_credentials(username, password)
        if user is None:
            return Outcome(401, p.error_body(401, "INVALID_LOGIN", p.MSG_BAD_CREDENTIALS, Tag=tag))
        session = self._open(customer_id, user, purpose, language, save, tag, schedule_refresh)
        return self._advance(session, live=True)

    def with_card(
        self,
        card: Card,
        *,
        cached: bool,
        language: str | None = None,
        save: bool = False,
        tag: str | None = None,
    ) -> Outcome:
        running = self.running_job(card)
        if cached and running is not None:
            # Live work on the card is still going on: follow it (contract 3.3, S30).
            return self._pending(running, "OPERATION_PENDING", p.MSG_PENDING)
        session = self._open(
            card.customer_id, card.user, Purpose.API, language or card.language, save, tag, False
        )
        session.card = card
        if cached:
            window = self.state.switches.connect_cached_pending_seconds
            if card.connected_at is not None and self._now() < card.connected_at + window:
                # Right after a Connect sign-in, its processing may still be running (S12, S30).
                return self._dispatch(session, ready_at=card.connected_at + window, live=False)
        return self._advance(session, live=not cached)

    def answer(
        self,
        session: AuthSession,
        responses: object,
        *,
        save: bool | None = None,
        tag: str | None = None,
    ) -> Outcome:
        """Check the answer to the pending challenge; ask the next one or finish."""
        challenge = session.challenge
        if challenge is None or session.status is not SessionStatus.MFA:
            return self._fail(session, 400, "SESSION_NONEXISTENT", p.MSG_NO_SESSION)
        if tag is not None:
            session.tag = tag
        if save:
            session.save = True
        if not responses:
            # A 203 is resumable: asking again without answers gets the same challenge.
            return self._challenge(session)
        if not isinstance(responses, Mapping):
            return self._fail(
                session, 401, "INVALID_REQUEST", "SecurityResponses must be an object"
            )
        check = challenge.check(responses)
        if check.verdict is Verdict.UNKEYED:
            return self._fail(session, 401, "UNKNOWN_CHALLENGE_KEY", p.MSG_UNKNOWN_PROMPT)
        if check.verdict is Verdict.WRONG:
            return self._wrong_answer(session, challenge, responses)
        if check.followup is not None:
            session.challenge = check.followup
            return self._challenge(session)
        session.rounds_left -= 1
        if session.rounds_left > 0:
            return self._challenge(session, self._next_challenge(session))
        return self._finish(session, live=True)

    # -- background work (202) ------------------------------------------------------------------

    def running_job(self, card: Card) -> AuthSession | None:
        """The card's live work still running in the background, if any."""
        if card.job is None:
            return None
        session = self.state.sessions.get(card.job, self._now())
        if session is None or session.status is not SessionStatus.DISPATCHED:
            card.job = None
            return None
        self.settle(session)
        return session if session.status is SessionStatus.DISPATCHED else None

    def settle(self, session: AuthSession) -> Outcome:
        """Where a RequestId stands now, as its async endpoint answers (202, 203, 200 or error)."""
        job = session.background
        if session.status is SessionStatus.DISPATCHED and job is not None:
            if job.failure is None and self._now() < job.ready_at:
                return self._pending(session, "OPERATION_PENDING", p.MSG_PENDING)
            session.background = None
            if session.card is not None and session.card.job == session.request_id:
                session.card.job = None
            if job.failure is not None:
                status, code = job.failure
                outcome = self._fail(session, status, code, f"The operation ended with {code}")
            elif job.live and session.user.mfa:
                outcome = self._start_mfa(session)
            else:
                outcome = self._finish(session, live=job.live)
            if outcome.status >= 400:
                self._keep_failure(session, outcome.body)
            return outcome
        if session.status is SessionStatus.FAILED and session.failure is not None:
            return Outcome(int(session.failure["HttpStatusCode"]), session.failure, session)
        if session.status is SessionStatus.MFA and session.challenge is not None:
            return self._challenge(session)
        if session.card is not None:
            body = p.authorized_body(session.card, session.request_id, session.tag)
            return Outcome(200, body, session=session, card=session.card)
        return Outcome(400, p.error_body(400, "SESSION_NONEXISTENT", p.MSG_NO_SESSION))

    def finish_job(self, session: AuthSession, failure: tuple[int, str] | None = None) -> bool:
        """The control API: let dispatched work end now (with a failure, if given)."""
        job = session.background
        if session.status is not SessionStatus.DISPATCHED or job is None:
            return False
        job.ready_at = min(job.ready_at, self._now())
        job.failure = failure
        return True

    # -- steps --------------------------------------------------------------------------------

    def _now(self) -> float:
        return self.state.clock.now()

    def _open(
        self,
        customer_id: str,
        user: BankUser,
        purpose: Purpose,
        language: str,
        save: bool,
        tag: str | None,
        schedule_refresh: bool,
    ) -> AuthSession:
        return AuthSession(
            request_id=self.state.new_id(),
            customer_id=customer_id,
            user=user,
            purpose=purpose,
            language="fr" if language.lower().startswith("fr") else "en",
            save=save,
            tag=tag,
            schedule_refresh=schedule_refresh,
            expires_at=0.0,
        )

    def _advance(self, session: AuthSession, *, live: bool) -> Outcome:
        user = session.user
        if live and user.behaviour in _SLOW and session.purpose is Purpose.API:
            hold = self.state.switches.slow_bank_seconds if user.behaviour is Behaviour.SLOW else 0
            ready_at = self._now() + hold + self.state.switches.dispatched_seconds
            outcome = self._dispatch(session, ready_at=ready_at, live=True)
            return Outcome(202, outcome.body, outcome.session, outcome.card, hold_seconds=hold)
        if live and user.mfa:
            return self._start_mfa(session)
        return self._finish(session, live=live)

    def _dispatch(self, session: AuthSession, *, ready_at: float, live: bool) -> Outcome:
        """Answer 202 and go on in the background until ``ready_at``."""
        state = self.state
        session.status = SessionStatus.DISPATCHED
        session.background = Background(ready_at=ready_at, live=live)
        session.expires_at = self._now() + state.settings.request_ttl_seconds
        state.sessions.put(session.request_id, session, self._now())
        if session.card is not None:
            session.card.job = session.request_id
        code = "OPERATION_DISPATCHED" if live else "OPERATION_PENDING"
        message = p.MSG_DISPATCHED if live else p.MSG_PENDING
        return self._pending(session, code, message)

    def _pending(self, session: AuthSession, code: str, message: str) -> Outcome:
        body = p.pending_body(code, message, session.request_id, session.tag)
        return Outcome(202, body, session=session, card=session.card)

    def _start_mfa(self, session: AuthSession) -> Outcome:
        session.rounds_left = self.state.switches.mfa_rounds
        session.asked = 0
        return self._challenge(session, self._next_challenge(session))

    def _next_challenge(self, session: AuthSession) -> Challenge:
        """The sign-in's next challenge: every sign-in starts from the user's first one."""
        sequence = session.user.challenges
        challenge = sequence[session.asked % len(sequence)]
        session.asked += 1
        return challenge

    def _challenge(self, session: AuthSession, challenge: Challenge | None = None) -> Outcome:
        state = self.state
        if challenge is not None:
            session.challenge = challenge
        assert session.challenge is not None  # noqa: S101 - set when MFA starts
        session.status = SessionStatus.MFA
        session.expires_at = self._now() + state.settings.mfa_session_ttl_seconds
        state.sessions.put(session.request_id, session, self._now())
        challenges = [session.challenge.wire(session.language)]
        return Outcome(203, p.challenge_body(challenges, session.request_id), session=session)

    def _wrong_answer(
        self, session: AuthSession, challenge: Challenge, responses: Mapping[str, object]
    ) -> Outcome:
        offered = bool(challenge.choices) and challenge.type != TEXT_OR_CALL
        message = p.MSG_BAD_ANSWER
        if offered and not _all_offered(challenge, responses):
            message = p.MSG_NOT_A_CHOICE
        if session.purpose is Purpose.BANK:
            # The bank's own page asks the same question again.
            body = p.error_body(401, "INVALID_SECURITY_RESPONSE", message)
            return Outcome(401, body, session=session)
        session.wrong_answers += 1
        retry = (
            self.state.switches.wrong_answer == "new_challenge"
            and session.wrong_answers < MAX_WRONG_ANSWERS
        )
        if not retry:
            return self._fail(session, 401, "INVALID_SECURITY_RESPONSE", message)
        # The same RequestId goes on with a new question, in the 401 itself (public clients).
        asked = self._challenge(session, self._next_challenge(session))
        body = p.error_body(
            401,
            "INVALID_SECURITY_RESPONSE",
            message,
            RequestId=session.request_id,
            Links=p.AUTHORIZE_LINKS,
            SecurityChallenges=asked.challenges,
            Institution=asked.body["Institution"],
        )
        return Outcome(401, body, session=session)

    def _fail(self, session: AuthSession, status: int, code: str, message: str) -> Outcome:
        self.state.sessions.pop(session.request_id)
        body = p.error_body(status, code, message, RequestId=session.request_id, Tag=session.tag)
        return Outcome(status, body)

    def _keep_failure(self, session: AuthSession, body: p.JSON) -> None:
        """Dispatched work that failed: its RequestId answers the failure until it expires."""
        state = self.state
        session.status = SessionStatus.FAILED
        session.failure = body
        session.challenge = None
        state.sessions.put(session.request_id, session, self._now())

    def _issue_despite_error(self, session: AuthSession) -> bool:
        """The bank page, and Connect in "redirect" mode, hand out a LoginId for error users."""
        if session.purpose is Purpose.BANK:
            return True
        return (
            session.purpose is Purpose.CONNECT
            and self.state.switches.connect_error_users == "redirect"
        )

    def _finish(self, session: AuthSession, *, live: bool) -> Outcome:
        state = self.state
        behaviour = session.user.behaviour
        failing = behaviour in (Behaviour.DISABLED, Behaviour.RETRY_LATER)
        if failing and not self._issue_despite_error(session):
            if behaviour is Behaviour.DISABLED:
                return self._fail(session, 401, "DISABLED_LOGIN", p.MSG_DISABLED)
            return self._fail(session, 401, "RETRY_LATER", p.MSG_RETRY_LATER)

        card = session.card
        if card is None:
            card, created = state.issue_card(
                session.customer_id, session.user, session.language, save=session.save
            )
            if created and session.schedule_refresh:
                card.is_scheduled_refresh = True
        session.card = card
        session.challenge = None
        now = self._now()
        if session.purpose is Purpose.CONNECT and live:
            card.connected_at = now
        if live and not failing and self.webhooks is not None:
            # An extraction: KYC now; Connect and the bank page also start GetAccountsDetail's
            # processing themselves (the API's client starts it with its own call).
            by_itself = session.purpose is not Purpose.API
            self.webhooks.extracted(card, session.request_id, session.tag, with_detail=by_itself)
        if session.purpose is Purpose.BANK or failing:
            # Only a LoginId comes out of these: no data session to read from.
            state.sessions.pop(session.request_id)
            return Outcome(200, p.authorized_body(card, session.request_id, session.tag), card=card)

        if live:
            card.last_refresh = state.clock.utcnow()
        if live and session.purpose is Purpose.CONNECT and behaviour in _SLOW:
            # Connect hands out the LoginId; the bank's processing goes on in the background.
            self._dispatch(session, ready_at=now + state.switches.dispatched_seconds, live=False)
            body = p.authorized_body(card, session.request_id, session.tag)
            return Outcome(200, body, session=session, card=card)
        session.status = SessionStatus.AUTHORIZED
        session.expires_at = now + state.settings.request_ttl_seconds
        state.sessions.put(session.request_id, session, now)
        body = p.authorized_body(card, session.request_id, session.tag)
        return Outcome(200, body, session=session, card=card)


def _all_offered(challenge: Challenge, responses: Mapping[str, object]) -> bool:
    for key, value in responses.items():
        if challenge.is_key(str(key)):
            given = [value] if isinstance(value, str) else value
            if isinstance(given, list | tuple):
                return all(isinstance(a, str) and a.strip() in challenge.choices for a in given)
    return False
