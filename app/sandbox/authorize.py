"""The /Authorize state machine, shared by the API, the Connect page and the OAuth bank page."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.sandbox import payloads as p
from app.sandbox.state import AuthSession, Card, Purpose, SandboxState, SessionStatus
from app.sandbox.users import QUESTION_AND_ANSWER, QUESTIONS, BankUser, Behaviour, check_credentials


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int
    body: p.JSON
    session: AuthSession | None = None
    card: Card | None = None

    @property
    def flinks_code(self) -> str | None:
        code = self.body.get("FlinksCode")
        return code if isinstance(code, str) else None

    @property
    def request_id(self) -> str | None:
        value = self.body.get("RequestId")
        return value if isinstance(value, str) else None


class Authorizer:
    def __init__(self, state: SandboxState) -> None:
        self.state = state

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
        session = self._open(
            card.customer_id, card.user, Purpose.API, language or card.language, save, tag, False
        )
        session.card = card
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
        question = session.question
        if question is None or session.status is not SessionStatus.MFA:
            return self._fail(session, 400, "SESSION_NONEXISTENT", p.MSG_NO_SESSION)
        if tag is not None:
            session.tag = tag
        if save:
            session.save = True
        if not responses:
            # A 203 is resumable: asking again without answers gets the same challenge.
            return self._challenge(session, rotate=False)
        if not isinstance(responses, Mapping):
            return self._fail(
                session, 401, "INVALID_REQUEST", "SecurityResponses must be an object"
            )
        given = [value for prompt, value in responses.items() if question.is_prompt(str(prompt))]
        if not given:
            return self._fail(session, 401, "UNKNOWN_CHALLENGE_KEY", p.MSG_UNKNOWN_PROMPT)
        if not question.accepts(_first_answer(given[0])):
            if session.purpose is Purpose.BANK:
                # The bank's own page asks again; the API and Connect end the attempt.
                body = p.error_body(401, "INVALID_SECURITY_RESPONSE", p.MSG_BAD_ANSWER)
                return Outcome(401, body, session=session)
            return self._fail(session, 401, "INVALID_SECURITY_RESPONSE", p.MSG_BAD_ANSWER)
        session.rounds_left -= 1
        if session.rounds_left > 0:
            return self._challenge(session, rotate=True)
        return self._finish(session, live=True)

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
        if live and session.user.mfa:
            session.rounds_left = self.state.settings.mfa_rounds
            return self._challenge(session, rotate=True)
        return self._finish(session, live=live)

    def _challenge(self, session: AuthSession, *, rotate: bool) -> Outcome:
        state = self.state
        if rotate or session.question is None:
            session.question = state.next_question(QUESTIONS)
        session.status = SessionStatus.MFA
        session.expires_at = state.clock.now() + state.settings.mfa_session_ttl_seconds
        state.sessions.put(session.request_id, session, state.clock.now())
        body = p.challenge_body(
            session.question.prompt(session.language),
            session.request_id,
            session.tag,
            QUESTION_AND_ANSWER,
        )
        return Outcome(203, body, session=session)

    def _fail(self, session: AuthSession, status: int, code: str, message: str) -> Outcome:
        self.state.sessions.pop(session.request_id)
        body = p.error_body(status, code, message, RequestId=session.request_id, Tag=session.tag)
        return Outcome(status, body)

    def _issue_despite_error(self, session: AuthSession) -> bool:
        """The bank page, and Connect in "redirect" mode, hand out a LoginId for error users."""
        if session.purpose is Purpose.BANK:
            return True
        return (
            session.purpose is Purpose.CONNECT
            and self.state.settings.connect_error_users == "redirect"
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
        session.question = None
        now = state.clock.now()
        if session.purpose is Purpose.BANK or failing:
            # Only a LoginId comes out of these: no data session to read from.
            state.sessions.pop(session.request_id)
            return Outcome(200, p.authorized_body(card, session.request_id, session.tag), card=card)

        session.expires_at = now + state.settings.request_ttl_seconds
        state.sessions.put(session.request_id, session, now)
        if behaviour is Behaviour.DISPATCHED:
            session.status = SessionStatus.DISPATCHED
            body = p.pending_body(
                "OPERATION_DISPATCHED", p.MSG_DISPATCHED, session.request_id, session.tag
            )
            return Outcome(202, body, session=session, card=card)
        session.status = SessionStatus.AUTHORIZED
        if live:
            card.last_refresh = state.clock.utcnow()
        body = p.authorized_body(card, session.request_id, session.tag)
        return Outcome(200, body, session=session, card=card)


def _first_answer(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple) and value and isinstance(value[0], str):
        return value[0]
    return ""
