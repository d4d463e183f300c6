"""``/v3/{customerId}/BankingServices/{Endpoint}``: the Flinks API itself.

Endpoint names and JSON keys are matched case-insensitively, as Flinks' ASP.NET routing and model
binding do. The one ``dispatch`` route looks the endpoint up in a table, so an unknown endpoint or
method gets Flinks-like answers rather than Starlette's defaults.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.sandbox import data
from app.sandbox import payloads as p
from app.sandbox.authorize import Authorizer, Outcome
from app.sandbox.middleware import call_record
from app.sandbox.state import (
    AuthSession,
    CallRecord,
    DetailJob,
    Purpose,
    SandboxState,
    SessionStatus,
)
from app.sandbox.users import INSTITUTION
from app.sandbox.webhooks import Webhooks

ANY_METHOD = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_LOGIN_CODES = ("INVALID_LOGIN", "INVALID_REQUEST")
Handler = Callable[[Request, str, str | None, CallRecord], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class _Endpoint:
    method: str
    handler: Handler
    takes_arg: bool


class BankingApi:
    def __init__(
        self, state: SandboxState, authorizer: Authorizer, webhooks: Webhooks | None = None
    ) -> None:
        self.state = state
        self.authorizer = authorizer
        self.webhooks = webhooks
        self.endpoints: dict[str, _Endpoint] = {
            "generateauthorizetoken": _Endpoint("POST", self.generate_token, False),
            "authorize": _Endpoint("POST", self.authorize, False),
            "getaccountssummary": _Endpoint("POST", self.accounts_summary, False),
            "getaccountssummaryasync": _Endpoint("GET", self.accounts_summary, True),
            "getaccountsdetail": _Endpoint("POST", self.accounts_detail, False),
            "getaccountsdetailasync": _Endpoint("GET", self.accounts_detail, True),
            "authorizeasync": _Endpoint("GET", self.authorize_async, True),
            "deletecard": _Endpoint("DELETE", self.delete_card, True),
            "setscheduledrefresh": _Endpoint("PATCH", self.set_scheduled_refresh, False),
        }

    def routes(self) -> list[Route]:
        return [
            Route("/v3/{customer_id}/{service}/{endpoint}", self.dispatch, methods=ANY_METHOD),
            Route(
                "/v3/{customer_id}/{service}/{endpoint}/{arg}", self.dispatch, methods=ANY_METHOD
            ),
        ]

    async def dispatch(self, request: Request) -> Response:
        params = request.path_params
        call = call_record(request)
        name = str(params["endpoint"]).lower()
        endpoint = self.endpoints.get(name)
        arg: str | None = params.get("arg")
        if (
            str(params["service"]).lower() != "bankingservices"
            or endpoint is None
            or endpoint.takes_arg != (arg is not None)
        ):
            return JSONResponse(
                {"Message": "No HTTP resource was found that matches the request URI"}, 404
            )
        if call is not None:
            call.endpoint = p.BANKING_ENDPOINTS[name]
        if request.method != endpoint.method:
            message = f"The requested resource does not support http method '{request.method}'."
            return JSONResponse({"Message": message}, 405, headers={"Allow": endpoint.method})
        customer_id = str(params["customer_id"]).lower()
        record = call or _scratch_record(request)
        record.customer_id = customer_id
        if customer_id not in self.state.customer_ids:
            code = self.state.switches.unknown_customer_code
            return self._reply(record, 401, p.error_body(401, code, p.MSG_BAD_CUSTOMER))
        return await endpoint.handler(request, customer_id, arg, record)

    # -- tokens -------------------------------------------------------------------------------

    async def generate_token(
        self, request: Request, customer_id: str, _: str | None, call: CallRecord
    ) -> Response:
        key = request.headers.get("flinks-auth-key")
        call.token = key
        secret = self.state.settings.secret_key
        if not key or not hmac.compare_digest(key.strip().encode(), secret.encode()):
            return self._reply(call, 401, p.error_body(401, "UNAUTHORIZED", p.MSG_BAD_AUTH_KEY))
        token = self.state.mint_token(customer_id)
        return JSONResponse({"HttpStatusCode": 200, "Token": token.value})

    # -- /Authorize ---------------------------------------------------------------------------

    async def authorize(
        self, request: Request, customer_id: str, _: str | None, call: CallRecord
    ) -> Response:
        state = self.state
        token_value = request.headers.get("flinks-auth-key")
        call.token = token_value
        try:
            body = p.FlinksBody.parse(await request.body())
            call.fields = body.keys
            request_id = body.text("RequestId")
            login_id = body.text("LoginId")
            cached = body.flag("MostRecentCached")
            save = body.flag("Save")
            tag = body.text("Tag")
            username = body.text("Username")
            password = body.text("Password")
            institution = body.text("Institution")
            language = body.text("Language")
            schedule_refresh = body.flag("ScheduleRefresh")
        except p.BodyError as exc:
            return self._reply(call, 401, p.error_body(401, "INVALID_REQUEST", str(exc)))
        call.request_id, call.login_id, call.most_recent_cached = request_id, login_id, cached
        call.save, call.tag = save, tag

        token = state.valid_token(token_value, customer_id)
        pending = state.sessions.get(request_id, state.clock.now()) if request_id else None
        if token is None:
            if token_value or state.settings.require_authorize_token:
                return self._reply(call, 401, p.error_body(401, "ACCESS_DENIED", p.MSG_BAD_TOKEN))
        elif token.used:
            # Single use; with mfa_token_reuse=allow, except to continue the MFA conversation
            # this very token opened (the legacy docs send the same token back with answers).
            continuing = (
                state.switches.mfa_token_reuse == "allow"  # noqa: S105 - a switch value
                and pending is not None
                and pending.status is SessionStatus.MFA
                and token.request_id == request_id
            )
            if not continuing:
                return self._reply(call, 401, p.error_body(401, "ACCESS_DENIED", p.MSG_BAD_TOKEN))
        if token is not None:
            token.used = True

        if request_id:
            if (
                pending is None
                or pending.customer_id != customer_id
                or pending.purpose is not Purpose.API
                or pending.status not in (SessionStatus.MFA, SessionStatus.DISPATCHED)
            ):
                body_ = p.error_body(400, "SESSION_NONEXISTENT", p.MSG_NO_SESSION, Tag=tag)
                return self._reply(call, 400, body_)
            if pending.status is SessionStatus.DISPATCHED:
                settled = self.authorizer.settle(pending)
                if settled.status != 203:
                    return self._outcome(call, settled)
            outcome = self.authorizer.answer(
                pending, body.get("SecurityResponses"), save=save, tag=tag
            )
        elif login_id:
            card = state.find_card(login_id, customer_id)
            if card is None:
                body_ = p.error_body(401, "INVALID_LOGIN", p.MSG_BAD_LOGIN_ID, Tag=tag)
                return self._reply(call, 401, body_)
            outcome = self.authorizer.with_card(
                card, cached=bool(cached), language=language, save=bool(save), tag=tag
            )
        elif username is not None or password is not None:
            problem = _credentials_problem(username, password, institution, cached)
            if problem:
                body_ = p.error_body(401, "INVALID_REQUEST", problem, Tag=tag)
                return self._reply(call, 401, body_)
            outcome = self.authorizer.with_credentials(
                customer_id,
                username or "",
                password or "",
                purpose=Purpose.API,
                language=language or "en",
                save=bool(save),
                tag=tag,
                schedule_refresh=bool(schedule_refresh),
            )
        else:
            message = (
                "Provide Username, Password and Institution, a LoginId, "
                "or a RequestId with SecurityResponses"
            )
            return self._reply(call, 401, p.error_body(401, "INVALID_REQUEST", message, Tag=tag))

        if token is not None and outcome.status == 203 and outcome.session is not None:
            token.request_id = outcome.session.request_id
        if outcome.hold_seconds > 0:
            # A slow bank: the answer comes once the sync processing limit is reached. The work
            # is already under way, so a caller that gives up meanwhile loses only this answer.
            await _hold(request, outcome.hold_seconds)
        return self._outcome(call, outcome)

    async def authorize_async(
        self, request: Request, customer_id: str, arg: str | None, call: CallRecord
    ) -> Response:
        """``GET AuthorizeAsync/{requestId}``: where an /Authorize that answered 202 stands now.

        Flinks documents no async endpoint for /Authorize itself (contract 3.4 documents an
        AuthorizeAsync product without its path); this follows the documented pattern of
        ``GetAccountsDetailAsync/{requestId}`` (contract 6.3): GET, the RequestId in the path,
        x-api-key, 202 until the work is done, then the answer /Authorize would have given.
        """
        problem = self._api_key_problem(request, call)
        if problem is not None:
            return problem
        call.request_id = arg
        session = self.state.sessions.get((arg or "").strip(), self.state.clock.now())
        if session is None or session.customer_id != customer_id:
            return self._reply(
                call, 400, p.error_body(400, "SESSION_NONEXISTENT", p.MSG_NO_SESSION)
            )
        return self._outcome(call, self.authorizer.settle(session))

    # -- data ---------------------------------------------------------------------------------

    def _api_key_problem(self, request: Request, call: CallRecord) -> Response | None:
        expected = self.state.settings.api_key
        sent = request.headers.get("x-api-key")
        call.api_key = sent
        if not expected:
            return None
        if sent and hmac.compare_digest(sent.strip().encode(), expected.encode()):
            return None
        if not sent and self.state.switches.api_key_check == "optional":
            return None
        return self._reply(call, 401, p.error_body(401, "ACCESS_DENIED", p.MSG_BAD_API_KEY))

    async def _data_session(
        self, request: Request, customer_id: str, arg: str | None, call: CallRecord
    ) -> tuple[AuthSession, p.FlinksBody] | Response:
        problem = self._api_key_problem(request, call)
        if problem is not None:
            return problem
        body = p.FlinksBody({})
        if arg is None:
            try:
                body = p.FlinksBody.parse(await request.body())
                request_id = body.text("RequestId")
            except p.BodyError as exc:
                return self._reply(call, 400, p.error_body(400, "SESSION_NONEXISTENT", str(exc)))
            call.fields = body.keys
        else:
            request_id = arg
        call.request_id = request_id
        now = self.state.clock.now()
        session = self.state.sessions.get(request_id.strip(), now) if request_id else None
        if session is None or session.customer_id != customer_id:
            return self._reply(
                call, 400, p.error_body(400, "SESSION_NONEXISTENT", p.MSG_NO_SESSION)
            )
        if session.status is SessionStatus.DISPATCHED:
            settled = self.authorizer.settle(session)
            if settled.status == 202:
                pending = p.pending_body(
                    "OPERATION_PENDING", p.MSG_PENDING, session.request_id, session.tag, data=True
                )
                return self._reply(call, 202, pending)
        if session.status is not SessionStatus.AUTHORIZED or session.card is None:
            error = p.error_body(401, "UNAUTHORIZED", p.MSG_NOT_AUTHORIZED, RequestId=request_id)
            return self._reply(call, 401, error)
        call.login_id = session.card.login_id
        return session, body

    async def accounts_summary(
        self, request: Request, customer_id: str, arg: str | None, call: CallRecord
    ) -> Response:
        found = await self._data_session(request, customer_id, arg, call)
        if isinstance(found, Response):
            return found
        session, _ = found
        assert session.card is not None  # noqa: S101 - checked by _data_session
        accounts = data.accounts_summary(session.card.login_id)
        body = data.envelope(
            accounts, p.login_object(session.card), session.request_id, session.tag
        )
        return self._reply(call, 200, body)

    async def accounts_detail(
        self, request: Request, customer_id: str, arg: str | None, call: CallRecord
    ) -> Response:
        found = await self._data_session(request, customer_id, arg, call)
        if isinstance(found, Response):
            return found
        session, body = found
        assert session.card is not None  # noqa: S101 - checked by _data_session
        job = session.detail
        if job is None:
            # The first request of a session waits for the background processing; the Async
            # GET before any POST starts it too (with the default options) rather than failing.
            polls = self.state.switches.detail_pending_polls
            job = session.detail = DetailJob(_detail_options(body), polls)
            if self.webhooks is not None:
                # Flinks' webhook carries the data as soon as processing ends; the sandbox's
                # processing is done at once (the 202s only delay the API's answer).
                body_ = self._detail_body(session, job.options)
                job.announced = bool(self.webhooks.accounts_detail(session.card.login_id, body_))
        elif arg is None and job.delivered:
            job.options = _detail_options(body)  # processed data is served at once, as asked
        if job.polls_left > 0:
            job.polls_left -= 1
            pending = p.pending_body(
                "OPERATION_PENDING", p.MSG_PENDING, session.request_id, session.tag, data=True
            )
            return self._reply(call, 202, pending)
        job.delivered = True
        return self._reply(call, 200, self._detail_body(session, job.options))

    def _detail_body(self, session: AuthSession, options: data.DetailOptions) -> p.JSON:
        assert session.card is not None  # noqa: S101 - an authorized session has its card
        today = self.state.clock.utcnow().date()
        return p.accounts_detail_body(session.card, session.request_id, session.tag, today, options)

    # -- cards --------------------------------------------------------------------------------

    async def delete_card(
        self, request: Request, customer_id: str, arg: str | None, call: CallRecord
    ) -> Response:
        problem = self._api_key_problem(request, call)
        if problem is not None:
            return problem
        call.login_id = arg
        card = self.state.find_card(arg, customer_id)
        if card is None:
            return self._reply(call, 401, p.error_body(401, "INVALID_LOGIN", p.MSG_BAD_LOGIN_ID))
        # Processing ends with its RequestId at the latest: an expired session (not yet swept
        # from the map) holds nothing up.
        now = self.state.clock.now()
        busy = self.authorizer.running_job(card) is not None or any(
            s.card is card
            and s.expires_at > now
            and s.detail is not None
            and not (s.detail.delivered or s.detail.announced)
            for s in self.state.sessions.values()
        )
        if busy:
            return self._reply(call, 400, p.error_body(400, "CARD_IN_USE", p.MSG_CARD_IN_USE))
        self.state.delete_card(card)
        message = f"All of the information about LoginId {card.login_id} has been removed"
        return self._reply(call, 200, {"HttpStatusCode": 200, "Message": message})

    async def set_scheduled_refresh(
        self, request: Request, customer_id: str, _: str | None, call: CallRecord
    ) -> Response:
        problem = self._api_key_problem(request, call)
        if problem is not None:
            return problem
        try:
            body = p.FlinksBody.parse(await request.body())
            call.fields = body.keys
            login_id = body.text("LoginId")
            activated = body.flag("IsActivated")
        except p.BodyError as exc:
            return self._reply(call, 401, p.error_body(401, "INVALID_REQUEST", str(exc)))
        call.login_id = login_id
        card = self.state.find_card(login_id, customer_id)
        if card is None:
            return self._reply(call, 401, p.error_body(401, "INVALID_LOGIN", p.MSG_BAD_LOGIN_ID))
        card.is_scheduled_refresh = bool(activated)
        verb = "activated" if card.is_scheduled_refresh else "deactivated"
        # Flinks answers with a bare JSON string here, not an object.
        return self._reply(
            call, 200, f"LoginId {card.login_id} has now been {verb} for automatic refresh"
        )

    def _reply(self, call: CallRecord, status: int, body: object) -> JSONResponse:
        if isinstance(body, dict):
            code = body.get("FlinksCode")
            call.flinks_code = code if isinstance(code, str) else None
            rid = body.get("RequestId")
            call.response_request_id = rid if isinstance(rid, str) else None
            if status == 401 and code in _LOGIN_CODES:
                # 401 in the current error table, 400 in the help centre (contract 9.3).
                status = self.state.switches.invalid_login_status
                body = {**body, "HttpStatusCode": status}
        return JSONResponse(body, status_code=status)

    def _outcome(self, call: CallRecord, outcome: Outcome) -> JSONResponse:
        return self._reply(call, outcome.status, outcome.body)


def _credentials_problem(
    username: str | None, password: str | None, institution: str | None, cached: bool | None
) -> str | None:
    if not username or not password:
        return "Username and Password are both required"
    if cached:
        return "MostRecentCached=true needs a LoginId; credentials open a live session"
    if not institution:
        return "Institution is required with Username and Password"
    if institution.strip().lower() != INSTITUTION.lower():
        return f"Institution {institution!r} is not available on this instance"
    return None


def _detail_options(body: p.FlinksBody) -> data.DetailOptions:
    def flag(name: str) -> bool:
        try:
            value = body.flag(name)
        except p.BodyError:
            return True
        return True if value is None else value

    accounts = body.get("AccountsFilter")
    try:
        days = body.text("DaysOfTransactions") or body.text("DaysOfTransaction")
        date_from, date_to = body.text("DateFrom"), body.text("DateTo")
    except p.BodyError:
        days = date_from = date_to = None
    return data.DetailOptions(
        with_transactions=flag("WithTransactions"),
        with_balance=flag("WithBalance"),
        with_account_identity=flag("WithAccountIdentity"),
        days=data.parse_days(days),
        date_from=data.parse_date(date_from),
        date_to=data.parse_date(date_to),
        accounts_filter=(
            frozenset(str(a).lower() for a in accounts) if isinstance(accounts, list) else None
        ),
    )


async def _hold(request: Request, seconds: float) -> None:
    """Wait ``seconds``, or less if the caller hangs up first."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (left := deadline - loop.time()) > 0:
        if await request.is_disconnected():
            return
        await asyncio.sleep(min(0.1, left))


def _scratch_record(request: Request) -> CallRecord:
    return CallRecord(0, 0.0, request.method, request.url.path, None)
