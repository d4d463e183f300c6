"""``GET /v3/oauth/authorize`` and the sandbox's own bank login page it redirects to.

The bank page checks the username and password, asks the security questions of users that have
them, then redirects to ``redirect_uri?loginId=...&state=...``. Every test user gets a LoginId
there, the error users included: their documented outcome shows up on the live ``/Authorize``
that follows, which is how Flinks' custom OAuth flow surfaces bank errors.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from app.sandbox import bank_pages
from app.sandbox import payloads as p
from app.sandbox.authorize import Authorizer
from app.sandbox.banking import ANY_METHOD
from app.sandbox.challenges import TEXT_OR_CALL, Challenge
from app.sandbox.middleware import call_record
from app.sandbox.state import BankSession, CallRecord, Purpose, SandboxState
from app.sandbox.users import INSTITUTION

BANK_PATH = "/oauth/bank/"
DENIED_DESCRIPTION = "The user denied the access"


@dataclass(frozen=True, slots=True)
class BankStep:
    """Where a bank-page submission leads."""

    kind: Literal["redirect", "credentials", "mfa", "gone"]
    location: str | None = None
    challenge: Challenge | None = None
    error: str | None = None  # "invalid_login" or "invalid_answer" (keys of bank_pages.STRINGS)


def with_query(url: str, params: list[tuple[str, str]]) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + params
    return urlunsplit(parts._replace(query=urlencode(query)))


def public_base(request: Request, configured: str | None) -> str:
    return configured or str(request.base_url).rstrip("/")


class OAuth:
    def __init__(self, state: SandboxState, authorizer: Authorizer) -> None:
        self.state = state
        self.authorizer = authorizer

    def routes(self) -> list[Route]:
        return [
            Route("/v3/{first}/{second}", self.authorize, methods=ANY_METHOD),
            Route(BANK_PATH + "{session_id}", self.bank_page, methods=["GET", "POST"]),
        ]

    # -- GET /v3/oauth/authorize --------------------------------------------------------------

    async def authorize(self, request: Request) -> Response:
        first, second = request.path_params["first"], request.path_params["second"]
        if first.lower() != "oauth" or second.lower() != "authorize":
            return JSONResponse({"Message": "No HTTP resource was found"}, 404)
        if request.method != "GET":
            return JSONResponse({"Message": "Method not allowed"}, 405, headers={"Allow": "GET"})
        state = self.state
        call = call_record(request)
        query = request.query_params
        token_value = request.headers.get("flinks-auth-key")
        redirect_uri = query.get("redirect_uri")
        institution = query.get("institution_id") or query.get("institution")
        if call is not None:
            call.token, call.tag = token_value, query.get("tag")

        token = state.tokens.get(token_value.strip(), state.clock.now()) if token_value else None
        if token is None or token.used:
            # Flinks documents no token here (contract 12.1 #10): one sent is still checked.
            required = state.switches.oauth_token == "required"  # noqa: S105 - a switch value
            if token_value or (required and state.settings.require_authorize_token):
                return _error(call, 401, "ACCESS_DENIED", p.MSG_BAD_TOKEN)
            customer_id = next(iter(state.settings.customer_ids)).lower()
        else:
            customer_id = token.customer_id
        if call is not None:
            call.customer_id = customer_id
        # Never redirect to an address that was not whitelisted, not even with an error.
        if not redirect_uri or redirect_uri not in state.redirect_uris:
            message = "The redirect_uri is not whitelisted for this customer"
            return _error(call, 400, "INVALID_REQUEST", message)
        if not institution or institution.strip().lower() != INSTITUTION.lower():
            message = f"institution_id must be {INSTITUTION} on this instance"
            return _error(call, 400, "INVALID_REQUEST", message)
        if token is not None:
            token.used = True
        now = state.clock.now()
        lang = (query.get("lang") or "en").lower()
        session = BankSession(
            id=secrets.token_urlsafe(24),
            customer_id=customer_id,
            redirect_uri=redirect_uri,
            state=query.get("state"),
            language="fr" if lang.startswith("fr") else "en",
            tag=query.get("tag"),
            expires_at=now + state.settings.request_ttl_seconds,
        )
        state.bank_sessions.put(session.id, session, now)
        location = public_base(request, state.settings.public_url) + BANK_PATH + session.id
        return RedirectResponse(location, 302, headers={"Cache-Control": "no-store"})

    # -- the bank page ------------------------------------------------------------------------

    def find_session(self, session_id: str) -> BankSession | None:
        session = self.state.bank_sessions.get(session_id, self.state.clock.now())
        return None if session is None or session.done else session

    def current_challenge(self, session: BankSession) -> Challenge | None:
        if session.request_id is None:
            return None
        auth = self.state.sessions.get(session.request_id, self.state.clock.now())
        return None if auth is None else auth.challenge

    def submit_credentials(self, session: BankSession, username: str, password: str) -> BankStep:
        outcome = self.authorizer.with_credentials(
            session.customer_id,
            username,
            password,
            purpose=Purpose.BANK,
            language=session.language,
            save=True,
            tag=session.tag,
        )
        if outcome.status == 203 and outcome.session is not None:
            session.request_id = outcome.session.request_id
            return BankStep("mfa", challenge=self.current_challenge(session))
        if outcome.card is not None:
            return self._finish(session, [("loginId", outcome.card.login_id)])
        return BankStep("credentials", error="invalid_login")

    def submit_answers(self, session: BankSession, answers: Mapping[str, object]) -> BankStep:
        auth = self.state.sessions.get(session.request_id or "", self.state.clock.now())
        if auth is None:
            session.request_id = None
            return BankStep("credentials")
        outcome = self.authorizer.answer(auth, answers)
        if outcome.card is not None:
            return self._finish(session, [("loginId", outcome.card.login_id)])
        challenge = self.current_challenge(session)
        if outcome.status == 203:
            return BankStep("mfa", challenge=challenge)
        if outcome.flinks_code == "INVALID_SECURITY_RESPONSE" and challenge is not None:
            return BankStep("mfa", challenge=challenge, error="invalid_answer")
        session.request_id = None
        return BankStep("credentials")

    def deny(self, session: BankSession) -> BankStep:
        return self._finish(
            session, [("error", "access_denied"), ("error_description", DENIED_DESCRIPTION)]
        )

    def _finish(self, session: BankSession, params: list[tuple[str, str]]) -> BankStep:
        session.done = True
        self.state.bank_sessions.pop(session.id)
        if params[0][0] == "loginId":
            query = params + ([("state", session.state)] if session.state is not None else [])
        else:
            query = ([("state", session.state)] if session.state is not None else []) + params
        return BankStep("redirect", location=with_query(session.redirect_uri, query))

    async def bank_page(self, request: Request) -> Response:
        call = call_record(request)
        if call is not None:
            call.endpoint = "OAuthBankPage"
        session_id = request.path_params["session_id"]
        session = self.find_session(session_id)
        if session is None:
            return _html(bank_pages.gone_page("en"), 410)
        action = BANK_PATH + session_id
        if request.method == "GET":
            challenge = self.current_challenge(session)
            if challenge is not None:
                return _html(bank_pages.mfa_page(action, session.language, challenge))
            return _html(bank_pages.login_page(action, session.language))

        pairs = parse_qsl((await request.body()).decode("utf-8", "replace"))
        form = dict(pairs)
        if call is not None:
            call.fields = list(form)
        challenge = self.current_challenge(session)
        if form.get("action") == "deny":
            step = self.deny(session)
        elif form.get("action") == "answer" and challenge is not None:
            step = self.submit_answers(session, _form_responses(challenge, session, pairs))
        else:
            username = form.get("username", "")
            step = self.submit_credentials(session, username, form.get("password", ""))
            if step.kind == "credentials":
                error = bank_pages.message(session.language, "invalid_login")
                page = bank_pages.login_page(action, session.language, error, username)
                return _html(page, 200)
        return self._render(session, step, action)

    def _render(self, session: BankSession, step: BankStep, action: str) -> Response:
        language = session.language
        if step.kind == "redirect" and step.location is not None:
            headers = dict(bank_pages.HEADERS)
            return RedirectResponse(step.location, 302, headers=headers)
        if step.kind == "mfa" and step.challenge is not None:
            error = bank_pages.message(language, step.error) if step.error else None
            return _html(bank_pages.mfa_page(action, language, step.challenge, error))
        return _html(bank_pages.login_page(action, language))


def _form_responses(
    challenge: Challenge, session: BankSession, pairs: list[tuple[str, str]]
) -> dict[str, list[str]]:
    """The bank page's form fields as Flinks' SecurityResponses for the challenge shown."""
    if challenge.type == TEXT_OR_CALL:
        form = dict(pairs)
        return {form.get("phone", ""): [form.get("method", "")]}
    prompt = challenge.prompt(session.language)
    if challenge.choices:
        return {prompt: [value for name, value in pairs if name == "choice"]}
    return {prompt: [dict(pairs).get("answer", "")]}


def _html(content: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(content, status, headers=bank_pages.HEADERS)


def _error(call: CallRecord | None, status: int, code: str, message: str) -> JSONResponse:
    if call is not None:
        call.flinks_code = code
    return JSONResponse(p.error_body(status, code, message), status)
