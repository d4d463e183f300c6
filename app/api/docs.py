"""Swagger UI at /docs, served from PyPI's swagger-ui-bundle: no CDN, so it renders offline, and
with a CSP that allows nothing but this origin (the page's start-up script is a file here too,
not inline code). Development only, like the OpenAPI document it reads."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

DOCS_PATH = "/docs"
ASSETS_PATH = f"{DOCS_PATH}/assets"
# Swagger UI styles elements inline (style attributes); scripts come only from this origin.
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'none'"
)

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>flinks-bff API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="{assets}/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{docs}/start.js"></script></body></html>
"""

_START = """window.ui = SwaggerUIBundle({
  url: "%s",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
});
"""

router = APIRouter(include_in_schema=False)


def mount_docs(app: FastAPI, openapi_url: str) -> None:
    page = _PAGE.format(assets=ASSETS_PATH, docs=DOCS_PATH)
    start = _START % openapi_url

    @router.get(DOCS_PATH)
    async def docs() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": DOCS_CSP})

    @router.get(f"{DOCS_PATH}/start.js")
    async def docs_start() -> Response:
        return Response(start, media_type="text/javascript")

    app.include_router(router)
    app.mount(ASSETS_PATH, StaticFiles(directory=swagger_ui_path), name="docs-assets")
