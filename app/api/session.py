"""The browser session that owns flows: a 256-bit random cookie; Redis keeps only its hash."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request, Response

from app.api.deps import ServicesDep

SECURE_NAME = "__Host-flinks_bff_session"
LOCAL_NAME = "flinks_bff_session"


def cookie_name(secure: bool) -> str:
    # __Host- needs Secure; plain-http development (http://127.0.0.1) cannot set it.
    return SECURE_NAME if secure else LOCAL_NAME


async def current_session(request: Request, services: ServicesDep) -> str | None:
    value = request.cookies.get(cookie_name(services.settings.secure_cookies))
    if value and 32 <= len(value) <= 64:
        return value
    return None


SessionDep = Annotated[str | None, Depends(current_session)]


async def ensure_session(response: Response, services: ServicesDep, existing: SessionDep) -> str:
    """The caller's session, or a new one set on this response."""
    if existing:
        return existing
    session = secrets.token_urlsafe(32)
    secure = services.settings.secure_cookies
    response.set_cookie(
        cookie_name(secure),
        session,
        httponly=True,
        secure=secure,
        samesite="lax",  # the OAuth callback is a cross-site top-level GET; Lax sends it there
        path="/",
    )
    return session


NewSessionDep = Annotated[str, Depends(ensure_session)]
