"""Browser-facing protections on every response: security headers, CORS, CSRF checks.

- Every response: nosniff, a CSP (framing refused; the demo page may frame only Flinks
  Connect), Referrer-Policy no-referrer, HSTS when served over https, no-store on the API.
- CORS: an exact allow-list of origins, with credentials; anything else gets no CORS headers.
- CSRF: a state-changing request that says where it comes from (`Origin`) must come from an
  allowed origin (403); POST routes also require JSON (`require_json`, 415). A cross-site form
  can send neither a JSON content type nor a forged Origin.
- Fetch Metadata: a state-changing request the browser marks `Sec-Fetch-Site: cross-site` must
  carry an allowed Origin (403 otherwise), so a cross-site request that leaves Origin out is
  refused too. An allowed frontend may be on another site (CORS_ORIGINS), so cross-site with an
  allowed Origin passes; `same-origin`, `same-site` and `none` (typed by the user) pass when the
  Origin check does. Non-browser clients send no Fetch Metadata and are not affected.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.problems import problem_response
from app.errors import UnsupportedMediaType

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ALLOW_METHODS = "GET, POST, DELETE"
ALLOW_HEADERS = "authorization, content-type, x-request-id"
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
NO_STORE_PREFIXES = ("/v1/", "/internal/", "/livez", "/readyz", "/metrics")
# Never for a browser: the host backend's routes and Flinks' webhooks (servers send no Origin;
# a request that carries one is refused by the CSRF check below).
NO_CORS_PREFIXES = ("/internal/", "/v1/webhooks/")


def demo_csp(connect_origin: str, token_origin: str | None = None) -> str:
    """`token_origin`: the development token issuer the demo fetches from in jwt mode."""
    connect_src = "'self'" if token_origin is None else f"'self' {token_origin}"
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src {connect_src}; frame-src {connect_origin}; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'self'; object-src 'none'"
    )


class BrowserSecurityMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        allowed_origins: Iterable[str],
        connect_origin: str,
        hsts: bool,
        unframed_paths: Iterable[str] = ("/docs",),
    ) -> None:
        self.app = app
        self.allowed_origins = frozenset(allowed_origins)
        self.demo_csp = demo_csp(connect_origin).encode()
        self.hsts = hsts
        self.csp_exempt = tuple(unframed_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        method: str = scope["method"]
        path: str = scope["path"]
        origin = headers.get("origin")
        # The host backend's routes and webhooks are never for a browser: no origin is allowed.
        origin_allowed = (
            origin is not None
            and origin in self.allowed_origins
            and not path.startswith(NO_CORS_PREFIXES)
        )
        send = self._decorating(send, path, origin if origin_allowed else None)

        if method == "OPTIONS" and "access-control-request-method" in headers:
            await self._preflight(scope, receive, send, origin_allowed)
            return
        cross_site = headers.get("sec-fetch-site", "").strip().lower() == "cross-site"
        if (
            method not in SAFE_METHODS
            and path.startswith("/v1/")
            and not origin_allowed
            and (origin is not None or cross_site)
        ):
            response = problem_response(
                403,
                "origin_not_allowed",
                "Origin not allowed",
                detail="Only the allowed origins (BFF_CORS_ORIGINS) may call the API cross-site.",
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _preflight(
        self, scope: Scope, receive: Receive, send: Send, origin_allowed: bool
    ) -> None:
        if not origin_allowed:
            response = problem_response(403, "origin_not_allowed", "Origin not allowed")
            await response(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 204,
                "headers": [
                    (b"access-control-allow-methods", ALLOW_METHODS.encode()),
                    (b"access-control-allow-headers", ALLOW_HEADERS.encode()),
                    (b"access-control-max-age", b"600"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    def _decorating(self, send: Send, path: str, cors_origin: str | None) -> Send:
        is_demo = path == "/" or path.startswith("/web/")
        csp: bytes | None = (
            None
            if path.startswith(self.csp_exempt)
            else self.demo_csp
            if is_demo
            else API_CSP.encode()
        )
        no_store = path.startswith(NO_STORE_PREFIXES)

        async def decorated(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = list(message.get("headers", []))
                present = {name.lower() for name, _ in raw}
                extra: list[tuple[bytes, bytes]] = [
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"cross-origin-opener-policy", b"same-origin"),
                    (b"cross-origin-resource-policy", b"same-origin"),
                ]
                if b"referrer-policy" not in present:
                    extra.append((b"referrer-policy", b"no-referrer"))
                if csp is not None and b"content-security-policy" not in present:
                    extra.append((b"content-security-policy", csp))  # a route's own CSP wins
                if self.hsts:
                    extra.append(
                        (b"strict-transport-security", b"max-age=31536000; includeSubDomains")
                    )
                if no_store and b"cache-control" not in present:
                    extra.append((b"cache-control", b"no-store"))
                if cors_origin is not None:
                    extra += [
                        (b"access-control-allow-origin", cors_origin.encode()),
                        (b"access-control-allow-credentials", b"true"),
                        (b"access-control-expose-headers", b"x-request-id, retry-after"),
                    ]
                extra.append((b"vary", b"Origin"))
                message["headers"] = raw + extra
            await send(message)

        return decorated


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


async def require_json(request: Request) -> None:
    """POST routes take JSON only: the content types a cross-site form can send are refused.
    A POST with no body at all may omit the type (a form always sends one)."""
    content_type = request.headers.get("content-type")
    if content_type is None and request.headers.get("content-length", "0") == "0":
        return
    if not _is_json(content_type):
        raise UnsupportedMediaType("Send JSON, with Content-Type: application/json.")
