"""Connect on mobile: the hosted Connect page a native app opens (domain: app/flows/hosted.py).

`GET /v1/connect/hosted/{flow_id}` serves the page (app/web/hosted.html and hosted.js), in
production too. Its script reads the one-time ticket from the address's fragment (which no
server sees), takes it out of the address bar, and calls `.../open`, which answers the iframe
URL and sets the page's binding cookie (HttpOnly, SameSite=Strict, this flow's path only). When
Connect reports its REDIRECT (from Connect's origin only), or when a Connect that ignores
`jsRedirect` navigates the page back to itself with `?loginId=…`, the script posts the loginId
to `.../complete` and goes where the answer says: the app's return URL with the handoff code.

Like Connect's landing page (app/api/landing.py), the page route never reads the query or the
flow: the loginId that may be in it is neither parsed, stored nor logged. The answers are
`no-store`, `Referrer-Policy: no-referrer`, with their own strict CSP that lets the page frame
only Connect. The JSON steps need no identity: the ticket, then the cookie, are the proof.
"""

from __future__ import annotations

import functools
import html
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Request, Response
from starlette.responses import FileResponse, HTMLResponse

from app.api.deps import FlowsDep, SettingsDep
from app.api.landing import FLOW_ID, WEB_DIR
from app.api.schemas import CompleteIn, FlowId, HostedCompleteOut, HostedOpenIn, HostedOpenOut
from app.api.security import require_json
from app.flows.hosted import HostedConnect

HOSTED_PATH: Final = "/v1/connect/hosted/"
SCRIPT_PATH: Final = "/v1/connect/hosted.js"
STYLE_PATH: Final = "/v1/connect/hosted.css"
SECURE_COOKIE: Final = "__Secure-flinks_bff_page"
LOCAL_COOKIE: Final = "flinks_bff_page"


def hosted_csp(connect_origin: str) -> str:
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        f"img-src 'self'; frame-src {connect_origin}; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )


def hosted_url_prefix(public_url: str) -> str:
    """The page for a flow is this followed by the flow id (a path segment, as for the landing
    page: Connect appends `?loginId=…` to its redirectUrl)."""
    return public_url.rstrip("/") + HOSTED_PATH


def cookie_name(secure: bool) -> str:
    # __Host- would need Path=/; the cookie is kept to this flow's path instead.
    return SECURE_COOKIE if secure else LOCAL_COOKIE


def cookie_path(flow_id: str) -> str:
    return f"{HOSTED_PATH}{flow_id}/"


async def _hosted(flows: FlowsDep, settings: SettingsDep) -> HostedConnect:
    return HostedConnect(flows, page_prefix=hosted_url_prefix(str(settings.bff_public_url)))


HostedDep = Annotated[HostedConnect, Depends(_hosted)]

page_router = APIRouter(include_in_schema=False)
# The page's own steps, not an API for apps: out of the OpenAPI document, like the page.
router = APIRouter(prefix="/v1/connect/hosted", tags=["connect"], include_in_schema=False)


@functools.cache
def _template() -> str:
    return (WEB_DIR / "hosted.html").read_text(encoding="utf-8")


@page_router.get(HOSTED_PATH + "{flow_id}")
async def hosted_page(flow_id: str, flows: FlowsDep) -> HTMLResponse:
    # Not FlowId: a malformed id still gets the page, whose script clears the address bar.
    shown = flow_id if FLOW_ID.fullmatch(flow_id) else ""
    body = _template().replace("{{FLOW_ID}}", html.escape(shown, quote=True))
    return HTMLResponse(
        body,
        headers={
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            "Content-Security-Policy": hosted_csp(flows.config.connect_origin),
        },
    )


@page_router.get(SCRIPT_PATH)
async def hosted_script() -> FileResponse:
    return FileResponse(WEB_DIR / "hosted.js", media_type="text/javascript")


@page_router.get(STYLE_PATH)
async def hosted_style() -> FileResponse:
    return FileResponse(WEB_DIR / "hosted.css", media_type="text/css")


@router.post(
    "/{flow_id}/open",
    summary="The hosted page opens: its one-time ticket (or its cookie) for Connect's iframe URL",
    dependencies=[Depends(require_json)],
)
async def open_hosted_page(
    body: HostedOpenIn,
    request: Request,
    response: Response,
    hosted: HostedDep,
    settings: SettingsDep,
    flow_id: FlowId,
) -> HostedOpenOut:
    secure = settings.secure_cookies
    page = await hosted.open(
        flow_id=flow_id, ticket=body.ticket, binding=request.cookies.get(cookie_name(secure))
    )
    if page.binding is not None:
        response.set_cookie(
            cookie_name(secure),
            page.binding,
            httponly=True,
            secure=secure,
            samesite="strict",  # only the page itself calls these routes
            path=cookie_path(flow_id),
        )
    return HostedOpenOut(iframe_url=page.iframe_url, connect_origin=page.connect_origin)


@router.post(
    "/{flow_id}/complete",
    summary="The hosted page hands over Connect's loginId; answers the return URL with the "
    "handoff code",
    dependencies=[Depends(require_json)],
)
async def complete_hosted_page(
    body: CompleteIn,
    request: Request,
    hosted: HostedDep,
    settings: SettingsDep,
    flow_id: FlowId,
) -> HostedCompleteOut:
    location = await hosted.complete(
        flow_id=flow_id,
        binding=request.cookies.get(cookie_name(settings.secure_cookies)),
        login_id=body.login_id,
        institution=body.institution,
    )
    return HostedCompleteOut(location=location)
