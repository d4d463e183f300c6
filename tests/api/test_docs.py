"""/docs is Swagger UI from a package on this server: it names nothing from another origin."""

from __future__ import annotations

import re

import httpx

from app.api.docs import DOCS_CSP


async def test_docs_page_loads_only_this_origins_files(client: httpx.AsyncClient) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == DOCS_CSP
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources, page.text
    for source in sources:
        assert source.startswith("/docs/"), source
        served = await client.get(source)
        assert served.status_code == 200, source
    assert "<script>" not in page.text  # no inline code: the CSP allows none


async def test_docs_start_script_reads_our_openapi_document(client: httpx.AsyncClient) -> None:
    script = await client.get("/docs/start.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert '"/openapi.json"' in script.text
    assert (await client.get("/openapi.json")).status_code == 200
