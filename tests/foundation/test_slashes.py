"""No response builds a URL from request headers: slash variants of every route are 404s, never
redirects to `http://<Host>/...` (which would also re-send a POST body to that host)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

import httpx
from fastapi import FastAPI
from starlette.routing import Mount

HOSTILE = "evil.example"
QUERY = b"?state=s&loginId=l"  # kept in the Location of the redirect this replaced
_FILE = "/web/app.js/"


def _routes(routes: Iterable[object]) -> Iterator[object]:
    """Every route, through included routers (FastAPI keeps them as branches that list their
    routes in `effective_candidates()`)."""
    for route in routes:
        branch = getattr(route, "effective_candidates", None)
        if callable(branch):
            yield from _routes(branch())
        else:
            yield route


def _variants(routes: Iterable[object]) -> list[tuple[str, str]]:
    """(method, path) for the slash variant of every route: `/x` -> `/x/`, `/x/` -> `/x`, and
    `/` -> `//`; a mount gets its bare prefix and a file below it with a trailing slash."""
    variants: list[tuple[str, str]] = []
    for route in _routes(routes):
        if isinstance(route, Mount):
            # StaticFiles serves `/web/app.js/` as the file: harmless, and no redirect either.
            variants += [("GET", route.path), ("GET", f"{route.path}/"), ("GET", _FILE)]
            continue
        template: str = getattr(route, "path")  # noqa: B009 - every route kind has one
        path = re.sub(r"\{[^}]+\}", "A" * 22, template)
        variant = "//" if path == "/" else path.rstrip("/") if path.endswith("/") else path + "/"
        methods: set[str] = getattr(route, "methods", None) or {"GET"}
        variants += [(method, variant) for method in sorted(methods)]
    return variants


async def test_slash_variants_of_every_route_are_404_problems_not_redirects(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    variants = _variants(app.routes)
    paths = {path for _, path in variants}
    # Every operation of the OpenAPI document, the health routes, the demo page and its files.
    document = (await client.get("/openapi.json")).json()
    documented = {re.sub(r"\{[^}]+\}", "A" * 22, path) + "/" for path in document["paths"]}
    assert documented <= paths
    assert {"/v1/oauth/callback/", "/livez/", "/readyz/", "/metrics/", "//", "/web"} <= paths
    assert len(variants) >= 15
    for method, path in variants:
        request = client.build_request(
            method, "/", json={} if method == "POST" else None, headers={"Host": HOSTILE}
        )
        # Set raw: httpx would read `//` as a URL without a scheme.
        request.url = request.url.copy_with(raw_path=path.encode() + QUERY)
        response = await client.send(request, follow_redirects=False)
        assert not 300 <= response.status_code < 400, (method, path, response.headers)
        assert "location" not in response.headers, (method, path)
        assert HOSTILE not in response.text
        if path == _FILE:
            continue
        assert response.status_code == 404, (method, path, response.status_code)
        assert response.headers["content-type"] == "application/problem+json"
        if method != "HEAD":
            assert response.json()["code"] == "not_found"
