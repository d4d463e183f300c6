"""Flinks custom OAuth: start (navigation or SPA) and the redirect_uri callback."""

from __future__ import annotations

import html
from typing import Annotated
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, Depends, Query, Request, Response, status
from starlette.responses import HTMLResponse, RedirectResponse

from app.api.deps import FlowsDep
from app.api.identity import FlowStarterDep
from app.api.limits import rate_limited
from app.api.schemas import OAuthSessionIn, OAuthSessionOut, Url
from app.api.security import require_json
from app.api.session import SessionDep, SessionRotationDep
from app.errors import AppError, LoginOwnedElsewhere, StateInvalid
from app.flows import INSTITUTION_ID_PATTERN, CallbackResult, Language, checked_challenge

router = APIRouter(prefix="/v1/oauth", tags=["oauth"])

Institution = Annotated[str, Query(pattern=INSTITUTION_ID_PATTERN)]
# Callback parameters longer than these are not Flinks' and are treated as absent.
_MAX_PARAM = {"loginId": 64, "state": 64, "error": 64}


def _redirect(location: str, carry: Response | None = None) -> RedirectResponse:
    """A 303; `carry` is the dependency-injected response whose cookies must come along
    (FastAPI applies them only to responses it builds itself)."""
    response = RedirectResponse(location, status_code=status.HTTP_303_SEE_OTHER)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    if carry is not None:
        response.raw_headers.extend(h for h in carry.raw_headers if h[0] == b"set-cookie")
    return response


@router.get(
    "/start",
    status_code=status.HTTP_303_SEE_OTHER,
    response_class=RedirectResponse,
    summary="Top-level navigation: create state and flow, then 303 to the bank's login page",
    responses={303: {"description": "To Flinks' bank login page"}},
    dependencies=[rate_limited("start")],
)
async def start(
    carry: Response,
    flows: FlowsDep,
    session: FlowStarterDep,
    institution: Institution,
    return_url: Annotated[Url | None, Query()] = None,
    language: Annotated[Language, Query()] = "en",
) -> RedirectResponse:
    started = await flows.start_oauth(
        session=session.owner, institution=institution, return_url=return_url, language=language
    )
    await session.keep()
    return _redirect(started.authorize_url, carry)


@router.post(
    "/sessions",
    status_code=status.HTTP_201_CREATED,
    summary="For a single-page app: the same as start, answering the bank URL as JSON",
    dependencies=[Depends(require_json), rate_limited("start")],
)
async def create_session(
    body: OAuthSessionIn, flows: FlowsDep, session: FlowStarterDep
) -> OAuthSessionOut:
    started = await flows.start_oauth(
        session=session.owner,
        institution=body.institution,
        return_url=body.return_url,
        language=body.language,
        code_challenge=checked_challenge(body.code_challenge, body.code_challenge_method),
    )
    await session.keep()
    return OAuthSessionOut(
        flow_id=started.flow.flow_id,
        authorize_url=started.authorize_url,
        expires_at=started.flow.expires_at,
    )


def _param(request: Request, name: str) -> str | None:
    """The one value of `name`; None when it is absent, empty, repeated or too long."""
    values = request.query_params.getlist(name)
    if len(values) != 1 or not values[0] or len(values[0]) > _MAX_PARAM[name]:
        return None
    return values[0]


def _bank_error(request: Request) -> str | None:
    """None only when the bank sent no `error` at all: any `error` parameter, however long,
    empty or repeated, means the bank refused ('' when its code cannot be read)."""
    if "error" not in request.query_params:
        return None
    return _param(request, "error") or ""


def _return_location(result: CallbackResult) -> str:
    parts = urlsplit(result.return_url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if result.handoff_code is not None:  # to a native app, which redeems it with its verifier
        query += [("flow_id", result.flow_id), ("handoff_code", result.handoff_code)]
        return urlunsplit(parts._replace(query=urlencode(query), fragment=""))
    query += [("flow_id", result.flow_id), ("status", result.status)]
    if result.error_code:
        query.append(("error", result.error_code))
    return urlunsplit(parts._replace(query=urlencode(query), fragment=""))


@router.get(
    "/callback",
    status_code=status.HTTP_303_SEE_OTHER,
    response_class=RedirectResponse,
    summary="Flinks' redirect_uri: ?loginId&state, or ?state&error&error_description",
    responses={303: {"description": "To the flow's return URL with flow_id and status only"}},
)
async def callback(
    request: Request,
    carry: Response,
    flows: FlowsDep,
    session: SessionDep,
    rotation: SessionRotationDep,
) -> Response:
    # error_description is never read: it is free text from outside and is not shown anywhere.
    try:
        result = await flows.oauth_callback(
            session=session,
            state=_param(request, "state"),
            login_id=_param(request, "loginId"),
            error=_bank_error(request),
        )
    except StateInvalid:
        if "text/html" not in request.headers.get("accept", ""):
            raise
        # A person mid-navigation gets a page, not JSON; it quotes nothing from the request.
        return _state_invalid_page(flows.config.return_urls[0])
    except LoginOwnedElsewhere:
        if "text/html" not in request.headers.get("accept", ""):
            raise
        return _page(_OWNED_ELSEWHERE_PAGE, flows.config.return_urls[0], LoginOwnedElsewhere)
    await rotation.after(result.connected_now)
    return _redirect(_return_location(result), carry)


_STATE_INVALID_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Link not completed</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><h1>This bank link could not be completed</h1>
<p>The link attempt is unknown, has expired, was already used, or was started in another
browser. Nothing was linked. Please start again.</p>
<p><a href="{start_over}">Start again</a></p></body></html>
"""


_OWNED_ELSEWHERE_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Link not completed</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><h1>This bank account is linked by another user</h1>
<p>Nothing was linked. If this is your account, sign in as the user who linked it.</p>
<p><a href="{start_over}">Back</a></p></body></html>
"""


def _state_invalid_page(start_over: str) -> HTMLResponse:
    return _page(_STATE_INVALID_PAGE, start_over, StateInvalid)


def _page(template: str, start_over: str, error: type[AppError]) -> HTMLResponse:
    return HTMLResponse(
        template.format(start_over=html.escape(start_over, quote=True)),
        status_code=error.status,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )
