"""The Connect page (``/v2/`` and ``/``) and the JSON endpoints its script calls (``/v2/api/*``).

The page is static HTML + JS (no build step, no external resources). The authorize token from the
iframe URL is checked when the page loads and consumed by the first credentials submission, which
opens a Connect session; retries and MFA answers then name that session, not the token.
"""

from __future__ import annotations

import secrets
from importlib import resources
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from app.sandbox import data
from app.sandbox import payloads as p
from app.sandbox.authorize import Authorizer, Outcome
from app.sandbox.middleware import call_record
from app.sandbox.state import ConnectSession, Purpose, SandboxState
from app.sandbox.users import INSTITUTION

PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'"
    ),
    # The page URL carries the authorize token: never send it on as a Referer.
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}
STATIC_TYPES = {
    "connect.js": "text/javascript; charset=utf-8",
    "connect.css": "text/css; charset=utf-8",
}


def _static(name: str) -> bytes:
    return resources.files("app.sandbox").joinpath("static", name).read_bytes()


class Connect:
    def __init__(self, state: SandboxState, authorizer: Authorizer) -> None:
        self.state = state
        self.authorizer = authorizer
        required = "true" if state.settings.require_authorize_token else "false"
        self.page = _static("connect.html").replace(b"{{TOKEN_REQUIRED}}", required.encode())
        self.assets = {name: _static(name) for name in STATIC_TYPES}

    def _render_page(self) -> bytes:
        """The page with the switches that shape its messages, read at each load."""
        switches = self.state.switches
        return self.page.replace(
            b"{{REDIRECT_MESSAGE}}", switches.redirect_message.encode()
        ).replace(b"{{JS_REDIRECT}}", switches.js_redirect.encode())

    def routes(self) -> list[Route]:
        return [
            Route("/", self.connect_page, methods=["GET"]),
            Route("/v2", self.add_slash, methods=["GET"]),
            Route("/v2/", self.connect_page, methods=["GET"]),
            Route("/v2/static/{name}", self.asset, methods=["GET"]),
            Route("/v2/api/token", self.check_token, methods=["POST"]),
            Route("/v2/api/credentials", self.credentials, methods=["POST"]),
            Route("/v2/api/mfa", self.mfa, methods=["POST"]),
        ]

    async def connect_page(self, request: Request) -> Response:
        self._name(request, "ConnectPage")
        return Response(
            self._render_page(), media_type="text/html; charset=utf-8", headers=PAGE_HEADERS
        )

    async def add_slash(self, request: Request) -> Response:
        query = request.url.query
        return RedirectResponse("/v2/" + (f"?{query}" if query else ""), 301)

    async def asset(self, request: Request) -> Response:
        self._name(request, "ConnectAsset")
        name = request.path_params["name"]
        if name not in self.assets:
            return Response(status_code=404)
        headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
        return Response(self.assets[name], media_type=STATIC_TYPES[name], headers=headers)

    # -- the page's JSON endpoints ------------------------------------------------------------

    async def check_token(self, request: Request) -> Response:
        self._name(request, "ConnectToken")
        body = await _json(request)
        token_value = body.get("authorizeToken")
        token = self.state.tokens.get(str(token_value or "").strip(), self.state.clock.now())
        if token is None or token.used:
            return _token_refused()
        return JSONResponse({"valid": True})

    async def credentials(self, request: Request) -> Response:
        self._name(request, "ConnectCredentials")
        state = self.state
        body = await _json(request)
        session = self._session(body.get("session"))
        if session is None and body.get("session"):
            return JSONResponse({"error": "session_unknown"}, 404)
        if session is None:
            opened = self._open_session(request, body)
            if isinstance(opened, Response):
                return opened
            session = opened
        if session.locked:
            return _locked()
        if session.card is not None:
            return self._connected(session)
        institution = str(body.get("institution") or INSTITUTION)
        if institution.lower() != INSTITUTION.lower():
            return JSONResponse({"error": "institution_unknown"}, 400)
        outcome = self.authorizer.with_credentials(
            session.customer_id,
            str(body.get("username") or ""),
            str(body.get("password") or ""),
            purpose=Purpose.CONNECT,
            language=session.language,
            save=True,
            tag=session.tag,
            schedule_refresh=body.get("scheduleRefresh") is True,
        )
        session.expires_at = state.clock.now() + state.settings.request_ttl_seconds
        return self._reply(session, outcome)

    async def mfa(self, request: Request) -> Response:
        self._name(request, "ConnectMfa")
        body = await _json(request)
        session = self._session(body.get("session"))
        if session is None:
            return JSONResponse({"error": "session_unknown"}, 404)
        if session.locked:
            return _locked()
        auth = self.state.sessions.get(session.request_id or "", self.state.clock.now())
        if auth is None:
            body_ = p.error_body(400, "SESSION_NONEXISTENT", p.MSG_NO_SESSION)
            return self._reply(session, Outcome(400, body_))
        outcome = self.authorizer.answer(auth, body.get("responses"))
        return self._reply(session, outcome)

    # -- helpers ------------------------------------------------------------------------------

    def _name(self, request: Request, endpoint: str) -> None:
        call = call_record(request)
        if call is not None:
            call.endpoint = endpoint

    def _session(self, session_id: object) -> ConnectSession | None:
        if not isinstance(session_id, str) or not session_id:
            return None
        return self.state.connect_sessions.get(session_id, self.state.clock.now())

    def _open_session(self, request: Request, body: dict[str, Any]) -> ConnectSession | Response:
        state = self.state
        token_value = str(body.get("authorizeToken") or "").strip()
        call = call_record(request)
        if call is not None:
            call.token = token_value or None
        token = state.tokens.get(token_value, state.clock.now()) if token_value else None
        if token is not None and not token.used:
            token.used = True
            customer_id = token.customer_id
        elif token_value or state.settings.require_authorize_token:
            return _token_refused()
        else:
            customer_id = next(iter(state.settings.customer_ids)).lower()
        retry = body.get("maximumRetry")
        language = str(body.get("language") or "en").lower()
        tag = body.get("tag")
        now = state.clock.now()
        session = ConnectSession(
            id=secrets.token_urlsafe(18),
            customer_id=customer_id,
            language="fr" if language.startswith("fr") else "en",
            tag=tag if isinstance(tag, str) and tag else None,
            maximum_retry=retry if isinstance(retry, int) and retry > 0 else None,
            expires_at=now + state.settings.request_ttl_seconds,
        )
        state.connect_sessions.put(session.id, session, now)
        return session

    def _reply(self, session: ConnectSession, outcome: Outcome) -> Response:
        challenges = outcome.challenges
        if challenges and outcome.session is not None and outcome.status in (203, 401):
            # A 203, or a wrong answer under wrong_answer=new_challenge: ask (again).
            session.request_id = outcome.session.request_id
            reply: dict[str, Any] = {
                "outcome": "mfa",
                "session": session.id,
                "requestId": session.request_id,
                "mfaTypes": list(dict.fromkeys(c["Type"] for c in challenges)),
                "challenges": [
                    {"type": c["Type"], "prompt": c["Prompt"], "choices": c.get("Iterables", [])}
                    for c in challenges
                ],
            }
            if outcome.status == 401:
                reply["error"] = outcome.flinks_code
            return JSONResponse(reply)
        if outcome.card is not None:
            session.card = outcome.card
            session.request_id = outcome.session.request_id if outcome.session else None
            return self._connected(session)
        session.failures += 1
        session.request_id = None
        return JSONResponse(
            {
                "outcome": "error",
                "session": session.id,
                "flinksCode": outcome.flinks_code,
                "message": outcome.body.get("Message"),
                "requestId": outcome.request_id,
                "failures": session.failures,
                "maximumRetryReached": session.locked,
            }
        )

    def _connected(self, session: ConnectSession) -> Response:
        assert session.card is not None  # noqa: S101 - callers check
        login_id = session.card.login_id
        accounts = [
            {
                "id": account["Id"],
                "title": account["Title"],
                "number": "•••• " + str(account["AccountNumber"])[-4:],
                "currency": account["Currency"],
                "type": account["Type"],
                "balance": account["Balance"]["Current"],
            }
            for account in data.accounts_summary(login_id)
        ]
        return JSONResponse(
            {
                "outcome": "connected",
                "session": session.id,
                "loginId": login_id,
                "requestId": session.request_id,
                "institution": INSTITUTION,
                "accounts": accounts,
            }
        )


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = p.FlinksBody.parse(await request.body())
    except p.BodyError:
        return {}
    return {key: body.get(key) for key in body.keys}


def _token_refused() -> JSONResponse:
    message = (
        "This authorize token is invalid, expired or already used. "
        "Generate a new one and load Flinks Connect again."
    )
    return JSONResponse({"valid": False, "flinksCode": "ACCESS_DENIED", "message": message}, 401)


def _locked() -> JSONResponse:
    return JSONResponse(
        {"error": "maximum_retry_reached", "flinksCode": "MAXIMUM_RETRY_REACHED"}, 403
    )
