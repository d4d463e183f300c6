"""The demo frontend (development only): `/` and its static files under `/web/`."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI, Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from app.api.deps import SettingsDep

WEB_DIR = Path(__file__).resolve().parent.parent / "web"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def demo_page(request: Request, settings: SettingsDep) -> Response:
    public = urlsplit(str(settings.bff_public_url))
    if request.url.netloc != public.netloc:
        # Cookies are kept per host and the OAuth callback returns to BFF_PUBLIC_URL, so the
        # demo runs there (http://localhost:8000 -> http://127.0.0.1:8000). The target is
        # configuration, never the request's Host.
        return RedirectResponse(f"{public.scheme}://{public.netloc}/", status_code=307)
    return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})


def mount_demo(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/web", StaticFiles(directory=WEB_DIR), name="web")
