"""Connect's `redirectUrl`: a landing page for the loginId when Connect navigates the browser.

`jsRedirect` is not one of Flinks' documented Connect parameters (flinks-contract.md 12.1 #7). A
Connect that ignores it ends by navigating the top window to `redirectUrl?loginId=…&institution=…`.
The BFF therefore points `redirectUrl` here, at `{BFF_PUBLIC_URL}/v1/connect/return/{flow_id}`
(built from configuration only: `landing_url_prefix`), and the flow keeps its own return URL.

The page's script (app/web/landing.js) takes the loginId out of the address bar and history at
once, completes the flow through `POST /v1/connect/sessions/{flow_id}/complete` (same origin, the
session cookie), and goes on to the flow's return URL with `flow_id` and `status` only. This
route never reads the query: the loginId is not parsed, stored or logged here (the access log
names the route template only). The answer is `no-store`, `Referrer-Policy: no-referrer`, and
its own strict CSP. The page and its two files are served in production too, where the demo
(`/`, `/web/`) is not mounted.
"""

from __future__ import annotations

import functools
import html
import re
from pathlib import Path
from typing import Final

from fastapi import APIRouter, Request
from starlette.responses import FileResponse, HTMLResponse, Response

from app.api.deps import FlowsDep
from app.api.session import SessionDep, SessionRotationDep
from app.errors import FlowNotFound
from app.flows import FlowRecord, Flows

WEB_DIR: Final = Path(__file__).resolve().parent.parent / "web"
LANDING_PATH: Final = "/v1/connect/return/"
SCRIPT_PATH: Final = "/v1/connect/landing.js"
STYLE_PATH: Final = "/v1/connect/landing.css"

FLOW_ID: Final = re.compile(r"[A-Za-z0-9_-]{22}")
LANDING_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
NO_STORE: Final = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": LANDING_CSP,
}

router = APIRouter(include_in_schema=False)


def landing_url_prefix(public_url: str) -> str:
    """Connect's redirectUrl for a flow is this followed by the flow id. The id is a path
    segment, not a query parameter: Flinks appends `?loginId=…`, and how it would join that to
    a query already present is not documented."""
    return public_url.rstrip("/") + LANDING_PATH


@functools.cache
def _template() -> str:
    return (WEB_DIR / "landing.html").read_text(encoding="utf-8")


def _page(*, status: int, flow_id: str, return_url: str) -> HTMLResponse:
    body = (
        _template()
        .replace("{{FLOW_ID}}", html.escape(flow_id, quote=True))
        .replace("{{RETURN_URL}}", html.escape(return_url, quote=True))
    )
    return HTMLResponse(body, status_code=status, headers=NO_STORE)


async def _connect_flow(
    flows: Flows, session: str | None, flow_id: str
) -> tuple[FlowRecord, bool] | None:
    """The caller's Connect flow and whether this read connected it, or None."""
    if not FLOW_ID.fullmatch(flow_id):
        return None
    try:
        read = await flows.status(session=session, flow_id=flow_id)
    except FlowNotFound:
        return None
    if read.flow.kind != "connect":
        return None
    return read.flow, read.connected_now


@router.get(LANDING_PATH + "{flow_id}")
async def connect_landing(
    request: Request,
    flow_id: str,
    flows: FlowsDep,
    session: SessionDep,
    rotation: SessionRotationDep,
) -> Response:
    # flow_id is a plain string, checked here: a malformed one must still get the page, whose
    # script takes the loginId out of the address bar (a 422 in JSON would leave it there).
    found = await _connect_flow(flows, session, flow_id)
    fallback = flows.config.return_urls[0]
    if found is None:
        if "text/html" not in request.headers.get("accept", ""):
            raise FlowNotFound
        # No flow id on the page: the script completes nothing and offers the way back.
        return _page(status=FlowNotFound.status, flow_id="", return_url=fallback)
    flow, connected_now = found
    await rotation.after(connected_now)
    response = _page(status=200, flow_id=flow.flow_id, return_url=flow.return_url or fallback)
    response.raw_headers.extend(h for h in rotation.response.raw_headers if h[0] == b"set-cookie")
    return response


@router.get(SCRIPT_PATH)
async def landing_script() -> FileResponse:
    return FileResponse(WEB_DIR / "landing.js", media_type="text/javascript")


@router.get(STYLE_PATH)
async def landing_style() -> FileResponse:
    return FileResponse(WEB_DIR / "landing.css", media_type="text/css")
