"""The demo frontend (development only): `/`, its static files under `/web/`, and the little the
page must know about this BFF (`/web/config.json`).

In `BFF_AUTH=jwt` mode the page needs a user to act as. Locally there is no identity provider:
the sandbox's development issuer (app/sandbox/dev_identity.py) stands in for one. When
`BFF_JWT_ISSUER` is that issuer (it ends with `/__sandbox/identity`), the page is told its token
URL and may fetch tokens from it, so the page's Content-Security-Policy names its origin in
`connect-src`. No setting names it: any other issuer is a real one, and the page then offers no
way to sign in (a host's own frontend does that). Production never mounts any of this.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from app.api.deps import SettingsDep
from app.api.security import demo_csp
from app.settings import Settings

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
DEV_ISSUER_SUFFIX = "/__sandbox/identity"

router = APIRouter(include_in_schema=False)


class DevIssuer(BaseModel):
    """Where the page gets a token for a user name, and for which audience."""

    token_url: str
    audience: str


class DemoConfig(BaseModel):
    auth: Literal["session", "jwt", "header"]
    dev_issuer: DevIssuer | None


def dev_issuer(settings: Settings) -> DevIssuer | None:
    """The sandbox's development token issuer, when jwt mode trusts it; else None."""
    issuer = (settings.bff_jwt_issuer or "").rstrip("/")
    audience = settings.bff_jwt_audience
    if settings.auth_mode != "jwt" or settings.is_production or not audience:
        return None
    parts = urlsplit(issuer)
    if not issuer.endswith(DEV_ISSUER_SUFFIX) or parts.scheme not in ("http", "https"):
        return None
    if not parts.netloc or parts.query or parts.fragment:
        return None
    return DevIssuer(token_url=f"{issuer}/token", audience=audience)


def page_csp(settings: Settings) -> str:
    """The demo page's policy: security.py's, plus the dev issuer's origin in `connect-src`
    when the page fetches tokens from it."""
    issuer = dev_issuer(settings)
    if issuer is None:
        return demo_csp(settings.connect_origin)
    parts = urlsplit(issuer.token_url)
    return demo_csp(settings.connect_origin, f"{parts.scheme}://{parts.netloc}")


@router.get("/")
async def demo_page(request: Request, settings: SettingsDep) -> Response:
    public = urlsplit(str(settings.bff_public_url))
    if request.url.netloc != public.netloc:
        # Cookies are kept per host and the OAuth callback returns to BFF_PUBLIC_URL, so the
        # demo runs there (http://localhost:8000 -> http://127.0.0.1:8000). The target is
        # configuration, never the request's Host.
        return RedirectResponse(f"{public.scheme}://{public.netloc}/", status_code=307)
    headers = {"Cache-Control": "no-cache", "Content-Security-Policy": page_csp(settings)}
    return FileResponse(WEB_DIR / "index.html", headers=headers)


@router.get("/web/config.json")
async def demo_config(response: Response, settings: SettingsDep) -> DemoConfig:
    """How callers are identified, and the dev issuer in jwt mode (see the module docstring)."""
    response.headers["Cache-Control"] = "no-store"
    return DemoConfig(auth=settings.auth_mode, dev_issuer=dev_issuer(settings))


def mount_demo(app: FastAPI) -> None:
    app.include_router(router)  # before the mount: /web/config.json is a route, not a file
    app.mount("/web", StaticFiles(directory=WEB_DIR), name="web")
