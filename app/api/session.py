"""The browser session that owns flows: a random id in an HttpOnly cookie, resolved through Redis.

Only ids the BFF issued count (an unknown value gets a fresh session), and the id is rotated when
a flow connects (`SessionRotation`), carrying the owner's flows over to the new id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Response

from app.api.deps import lifespan_state
from app.flows import BrowserSession, BrowserSessions

SECURE_NAME = "__Host-flinks_bff_session"
LOCAL_NAME = "flinks_bff_session"


def cookie_name(secure: bool) -> str:
    # __Host- needs Secure; plain-http development (http://127.0.0.1) cannot set it.
    return SECURE_NAME if secure else LOCAL_NAME


def _set_cookie(response: Response, session: BrowserSession, secure: bool) -> None:
    response.set_cookie(
        cookie_name(secure),
        session.session_id,
        httponly=True,
        secure=secure,
        samesite="lax",  # the OAuth callback is a cross-site top-level GET; Lax sends it there
        path="/",
    )


async def browser_session(request: Request) -> BrowserSession | None:
    """Resolved once per request (FastAPI caches a dependency within a request)."""
    state = lifespan_state(request)
    value = request.cookies.get(cookie_name(state["settings"].secure_cookies))
    return await state["sessions"].resolve(value)


BrowserSessionDep = Annotated[BrowserSession | None, Depends(browser_session)]


async def current_session(session: BrowserSessionDep) -> str | None:
    """The owner flows are bound to, or None without a session the BFF issued."""
    return session.owner if session else None


SessionDep = Annotated[str | None, Depends(current_session)]


@dataclass(slots=True)
class CallerSession:
    """The caller's session for a route that starts a flow. A new one is written to Redis and
    set as a cookie only by `keep()`, once the flow exists: refused input leaves nothing."""

    owner: str
    _new: BrowserSession | None
    _sessions: BrowserSessions
    _response: Response
    _secure: bool

    async def keep(self) -> None:
        if self._new is not None:
            await self._sessions.keep(self._new)
            _set_cookie(self._response, self._new, self._secure)


@dataclass(slots=True)
class SessionRotation:
    response: Response
    sessions: BrowserSessions
    session: BrowserSession | None
    secure: bool

    async def after(self, connected_now: bool) -> None:
        """Called with whether this request is the first to tell that a flow connected
        (`StatusRead.connected_now`): then the session gets a new id, set on this response
        (cookies it carries reach redirects too)."""
        if not connected_now or self.session is None:
            return
        rotated = await self.sessions.rotate(self.session)
        if rotated is not None:
            _set_cookie(self.response, rotated, self.secure)


async def session_rotation(
    request: Request, response: Response, session: BrowserSessionDep
) -> SessionRotation:
    state = lifespan_state(request)
    return SessionRotation(response, state["sessions"], session, state["settings"].secure_cookies)


SessionRotationDep = Annotated[SessionRotation, Depends(session_rotation)]
