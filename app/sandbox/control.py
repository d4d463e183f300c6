"""``/__sandbox/*``: the test-and-benchmark control API (not part of Flinks)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.sandbox import payloads as p
from app.sandbox.authorize import FAILURE_STATUS, Authorizer
from app.sandbox.faults import FaultConfig
from app.sandbox.middleware import CONTROL_PREFIX
from app.sandbox.oauth import BANK_PATH, OAuth
from app.sandbox.state import AuthSession, Purpose, SandboxState, SessionStatus
from app.sandbox.switches import SwitchConfig, WebhookSwitchConfig
from app.sandbox.users import INSTITUTION, find_user
from app.sandbox.webhooks import RESPONSE_TYPES, Webhooks


class Control:
    def __init__(
        self, state: SandboxState, authorizer: Authorizer, oauth: OAuth, webhooks: Webhooks
    ) -> None:
        self.state = state
        self.authorizer = authorizer
        self.oauth = oauth
        self.webhooks = webhooks

    def routes(self) -> list[Route]:
        c = CONTROL_PREFIX
        return [
            Route(f"{c}/health", self.health, methods=["GET"]),
            Route(f"{c}/calls", self.calls, methods=["GET", "DELETE"]),
            Route(f"{c}/faults", self.faults, methods=["GET", "PUT", "PATCH", "DELETE"]),
            Route(f"{c}/switches", self.switches, methods=["GET", "PUT", "PATCH", "DELETE"]),
            Route(f"{c}/dispatched", self.dispatched, methods=["GET"]),
            Route(f"{c}/dispatched/{{request_id}}/{{action}}", self.end_job, methods=["POST"]),
            Route(f"{c}/reset", self.reset, methods=["POST"]),
            Route(f"{c}/clock", self.clock, methods=["GET", "POST"]),
            Route(f"{c}/state", self.summary, methods=["GET"]),
            Route(f"{c}/logins", self.logins, methods=["GET", "POST"]),
            Route(f"{c}/oauth/complete", self.oauth_complete, methods=["POST"]),
            Route(f"{c}/connect/complete", self.connect_complete, methods=["POST"]),
            Route(f"{c}/webhooks", self.webhook_deliveries, methods=["GET", "DELETE"]),
            Route(f"{c}/webhooks/deliver", self.deliver_webhook, methods=["POST"]),
            Route(
                f"{c}/webhooks/switches",
                self.webhook_switches,
                methods=["GET", "PUT", "PATCH", "DELETE"],
            ),
        ]

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def calls(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.state.calls.clear()
            return Response(status_code=204)
        endpoint = request.query_params.get("endpoint")
        method = request.query_params.get("method")
        records = [
            call.to_json()
            for call in self.state.calls
            if (endpoint is None or (call.endpoint or "").lower() == endpoint.lower())
            and (method is None or call.method == method.upper())
        ]
        return JSONResponse(records)

    async def faults(self, request: Request) -> Response:
        return await self._runtime_config(request, "faults", FaultConfig)

    async def switches(self, request: Request) -> Response:
        return await self._runtime_config(request, "switches", SwitchConfig)

    async def webhook_switches(self, request: Request) -> Response:
        return await self._runtime_config(request, "webhook_switches", WebhookSwitchConfig)

    async def _runtime_config(
        self,
        request: Request,
        name: str,
        model: type[FaultConfig] | type[SwitchConfig] | type[WebhookSwitchConfig],
    ) -> Response:
        """GET reads a runtime config (the faults, the switches); PUT replaces it, PATCH changes
        some fields, DELETE restores the start-up settings."""
        state = self.state
        if request.method in ("PUT", "PATCH"):
            body = await _json_object(request)
            if body is None:
                return _invalid("the body must be a JSON object")
            if request.method == "PATCH":
                body = {**getattr(state, name).model_dump(), **body}
            try:
                setattr(state, name, model.model_validate(body))
            except ValidationError as exc:
                return _invalid(exc.errors(include_url=False, include_context=False))
        elif request.method == "DELETE":
            setattr(state, name, model.from_settings(state.settings))
        return JSONResponse(getattr(state, name).model_dump())

    async def dispatched(self, request: Request) -> Response:
        """Every RequestId that answered 202, and where its background work stands."""
        jobs = [
            _job(session, self.state.clock.now())
            for session in self.state.sessions.values()
            if session.background is not None or session.status is SessionStatus.FAILED
        ]
        return JSONResponse(jobs)

    async def end_job(self, request: Request) -> Response:
        """``finish`` or ``fail`` (body ``{"flinks_code"}``, default RETRY_LATER) a 202's work."""
        action = request.path_params["action"]
        if action not in ("finish", "fail"):
            return JSONResponse({"error": "unknown_action"}, 404)
        state = self.state
        session = state.sessions.get(request.path_params["request_id"], state.clock.now())
        if session is None:
            return JSONResponse({"error": "unknown_request_id"}, 404)
        failure = None
        if action == "fail":
            code = str((await _json_object(request) or {}).get("flinks_code") or "RETRY_LATER")
            if code not in FAILURE_STATUS:
                return _invalid(f"flinks_code must be one of {sorted(FAILURE_STATUS)}")
            failure = (FAILURE_STATUS[code], code)
        if not self.authorizer.finish_job(session, failure):
            return JSONResponse({"error": "not_dispatched", "status": session.status.value}, 409)
        return JSONResponse(_job(session, state.clock.now()))

    async def reset(self, request: Request) -> Response:
        self.state.reset()
        self.webhooks.reset()
        return Response(status_code=204)

    async def clock(self, request: Request) -> Response:
        clock = self.state.clock
        if request.method == "POST":
            body = await _json_object(request)
            seconds = (body or {}).get("advance_seconds")
            if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
                return _invalid("advance_seconds must be a number >= 0")
            clock.offset += float(seconds)
        return JSONResponse({"offset_seconds": clock.offset, "now": clock.utcnow().isoformat()})

    async def summary(self, request: Request) -> Response:
        s = self.state
        return JSONResponse(
            {
                "tokens": len(s.tokens),
                "sessions": len(s.sessions),
                "cards": len(s.cards),
                "bank_sessions": len(s.bank_sessions),
                "connect_sessions": len(s.connect_sessions),
                "calls": len(s.calls),
                "calls_total": s.call_seq,
            }
        )

    async def logins(self, request: Request) -> Response:
        state = self.state
        if request.method == "GET":
            return JSONResponse(
                [
                    {
                        "login_id": card.login_id,
                        "customer_id": card.customer_id,
                        "username": card.user.username,
                        "language": card.language,
                        "saved": card.saved,
                        "is_scheduled_refresh": card.is_scheduled_refresh,
                    }
                    for card in state.cards.values()
                ]
            )
        body = await _json_object(request) or {}
        user = find_user(str(body.get("username") or ""))
        if user is None:
            return _invalid("username must be one of the sandbox test users")
        customer_id = str(body.get("customer_id") or state.settings.customer_ids[0]).lower()
        if customer_id not in state.customer_ids:
            return _invalid("customer_id is not configured")
        language = "fr" if str(body.get("language") or "en").lower().startswith("fr") else "en"
        card, _ = state.issue_card(customer_id, user, language, save=body.get("save", True) is True)
        return JSONResponse({"login_id": card.login_id, "username": user.username}, 201)

    async def oauth_complete(self, request: Request) -> Response:
        """Do what a person does on the bank page, in one JSON call; answer with the Location."""
        body = await _json_object(request) or {}
        session_ref = str(body.get("session") or "")
        session_id = session_ref.rsplit(BANK_PATH, 1)[-1].split("?", 1)[0].strip("/")
        session = self.oauth.find_session(session_id)
        if session is None:
            return JSONResponse({"error": "unknown_session"}, 404)
        if body.get("deny") is True:
            return JSONResponse({"location": self.oauth.deny(session).location})
        step = self.oauth.submit_credentials(
            session, str(body.get("username") or ""), str(body.get("password") or "")
        )
        if step.kind == "credentials":
            return JSONResponse({"error": "invalid_login"}, 401)
        answers = _answers(body.get("answers"))
        while step.kind == "mfa" and step.challenge is not None:
            challenge = step.challenge
            prompt = challenge.prompt(session.language)
            if step.error or not any(challenge.is_key(key) for key in answers):
                error = "invalid_security_response" if step.error else "mfa_answer_missing"
                return JSONResponse({"error": error, "prompt": prompt}, 401)
            step = self.oauth.submit_answers(session, answers)
        if step.kind != "redirect":
            return JSONResponse({"error": "session_ended"}, 409)
        return JSONResponse({"location": step.location})

    async def connect_complete(self, request: Request) -> Response:
        """Link an account as the Connect page would, consuming the authorize token."""
        state = self.state
        body = await _json_object(request) or {}
        token_value = str(body.get("authorize_token") or "").strip()
        token = state.tokens.get(token_value, state.clock.now()) if token_value else None
        if token is None or token.used:
            message = "authorize_token is invalid, expired or already used"
            return JSONResponse({"error": "token_invalid", "message": message}, 401)
        token.used = True
        tag = body.get("tag")
        outcome = self.authorizer.with_credentials(
            token.customer_id,
            str(body.get("username") or ""),
            str(body.get("password") or ""),
            purpose=Purpose.CONNECT,
            language=str(body.get("language") or "en"),
            save=True,
            tag=tag if isinstance(tag, str) else None,
        )
        answers = _answers(body.get("answers"))
        while outcome.status == 203 and outcome.session is not None:
            challenge = outcome.session.challenge
            prompt = outcome.challenges[0]["Prompt"]
            if challenge is None or not any(challenge.is_key(key) for key in answers):
                return JSONResponse({"error": "mfa_answer_missing", "prompt": prompt}, 401)
            outcome = self.authorizer.answer(outcome.session, answers)
        if outcome.card is None:
            return JSONResponse(
                {
                    "error": "flinks_error",
                    "flinks_code": outcome.flinks_code,
                    "message": outcome.body.get("Message"),
                },
                401,
            )
        return JSONResponse(
            {
                "login_id": outcome.card.login_id,
                "request_id": outcome.session.request_id if outcome.session else None,
                "institution": INSTITUTION,
            }
        )

    async def webhook_deliveries(self, request: Request) -> Response:
        """Every delivery, oldest first (filters: ``login_id``, ``response_type``); never a body
        nor the secret. DELETE forgets them and cancels those still under way."""
        if request.method == "DELETE":
            self.webhooks.reset()
            return Response(status_code=204)
        login_id = (request.query_params.get("login_id") or "").lower()
        response_type = request.query_params.get("response_type")
        return JSONResponse(
            [
                delivery.to_json()
                for delivery in self.webhooks.deliveries
                if (not login_id or delivery.login_id.lower() == login_id)
                and (response_type is None or delivery.response_type == response_type)
            ]
        )

    async def deliver_webhook(self, request: Request) -> Response:
        """``{login_id, response_type?, request_id?, tag?}``: emit now, as after an extraction
        (no ``response_type``: KYC then GetAccountsDetail). A new RequestId unless one is given."""
        body = await _json_object(request)
        if body is None:
            return _invalid("the body must be a JSON object")
        if not self.webhooks.enabled:
            return JSONResponse({"error": "webhooks_off", "message": "no webhook_url set"}, 409)
        response_type = body.get("response_type")
        if response_type is not None and response_type not in RESPONSE_TYPES:
            return _invalid(f"response_type must be one of {list(RESPONSE_TYPES)}")
        card = self.state.cards.get(str(body.get("login_id") or "").strip().lower())
        if card is None:
            return JSONResponse({"error": "unknown_login"}, 404)
        request_id, tag = body.get("request_id"), body.get("tag")
        deliveries = self.webhooks.trigger(
            card,
            response_type,
            request_id if isinstance(request_id, str) and request_id else self.state.new_id(),
            tag if isinstance(tag, str) else None,
        )
        return JSONResponse([delivery.to_json() for delivery in deliveries], 202)


def _answers(value: object) -> dict[str, Any]:
    return {str(k): v for k, v in value.items()} if isinstance(value, Mapping) else {}


def _job(session: AuthSession, now: float) -> dict[str, Any]:
    job = session.background
    return {
        "request_id": session.request_id,
        "username": session.user.username,
        "login_id": session.card.login_id if session.card else None,
        "status": session.status.value,
        "ready_in_seconds": max(0.0, job.ready_at - now) if job else None,
        "failure": job.failure[1] if job and job.failure else None,
    }


async def _json_object(request: Request) -> dict[str, Any] | None:
    try:
        body = p.FlinksBody.parse(await request.body())
    except p.BodyError:
        return None
    return {key: body.get(key) for key in body.keys}


def _invalid(detail: object) -> JSONResponse:
    return JSONResponse({"error": "invalid", "detail": detail}, 422)
