"""Who the caller is (`BFF_AUTH`): the owner that flows and links are filed under.

- `session`: the anonymous browser session (app/api/session.py); no cookie, no owner yet.
- `jwt`: `Authorization: Bearer <JWT>`, verified by app/identity/jwt.py; the owner is `sub`.
- `header`: the user an authenticating proxy (oauth2-proxy and the like) names in
  `BFF_AUTH_HEADER`, believed only when the request comes from `BFF_TRUSTED_PROXIES`.

In `jwt` and `header` modes every /v1 route needs an identity (401 `unauthenticated`). The steps
a browser reaches by navigation, not by the frontend's fetch (the OAuth callback, Connect's
landing page and the completion it posts), cannot carry a bearer token: they stay bound to the
browser that started the flow through the same session cookie, which in these modes is issued
to the identified caller when a flow starts and stands for that caller's owner.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Response

from app.api.deps import lifespan_state
from app.api.session import BrowserSessionDep, CallerSession
from app.errors import Unauthenticated


async def _identify(request: Request) -> str | None:
    """The identity the request carries in jwt or header mode (once per request: FastAPI
    caches a dependency), None when it carries none."""
    identities = lifespan_state(request)["identities"]
    return await identities.identify(
        authorization=request.headers.get("authorization"),
        proxy_values=request.headers.getlist(identities.header),
        peer=request.client.host if request.client else None,
    )


IdentityDep = Annotated[str | None, Depends(_identify)]


async def caller(request: Request, identity: IdentityDep, session: BrowserSessionDep) -> str | None:
    """The caller's owner. Session mode: the session's owner, or None without one (a route
    answers "not found" or an empty list). Other modes: the verified identity, or 401."""
    identities = lifespan_state(request)["identities"]
    if identities.mode == "session":
        return session.owner if session else None
    if identity is None:
        raise identities.missing()
    return identity


CallerDep = Annotated[str | None, Depends(caller)]


async def known_caller(request: Request, owner: CallerDep) -> str:
    """The caller's owner, where a route needs one in every mode (401 without)."""
    if owner is None:
        raise lifespan_state(request)["identities"].missing()
    return owner


KnownCallerDep = Annotated[str, Depends(known_caller)]


async def flow_caller(
    request: Request, identity: IdentityDep, session: BrowserSessionDep
) -> str | None:
    """Completing a Connect flow: the identity when the request carries one, else (Connect's
    landing page, a browser navigation) the browser session the flow was started in."""
    if lifespan_state(request)["identities"].mode != "session" and identity is not None:
        return identity
    return session.owner if session else None


FlowCallerDep = Annotated[str | None, Depends(flow_caller)]


async def flow_starter(
    request: Request, response: Response, identity: IdentityDep, existing: BrowserSessionDep
) -> CallerSession:
    """The owner of a flow about to start, and the browser session that will carry it through
    the steps reached by navigation. Session mode: the caller's session, or a new one. Other
    modes: the identified caller (401 without), with a session standing for that owner."""
    state = lifespan_state(request)
    sessions, identities = state["sessions"], state["identities"]
    secure = state["settings"].secure_cookies
    owner: str | None = None
    if identities.mode != "session":
        owner = identity
        if owner is None:
            raise identities.missing()
    if existing is not None and (owner is None or existing.owner == owner):
        return CallerSession(existing.owner, None, sessions, response, secure)
    new = sessions.new(owner)
    return CallerSession(new.owner, new, sessions, response, secure)


FlowStarterDep = Annotated[CallerSession, Depends(flow_starter)]


async def token_caller(request: Request, owner: CallerDep) -> str:
    """Minting a bare authorize token: session mode wants a session the BFF issued and an
    allowed Origin (a page of the frontend, not a script elsewhere); other modes the caller's
    identity."""
    state = lifespan_state(request)
    identities = state["identities"]
    if owner is None:
        raise identities.missing()
    if identities.mode == "session":
        origin = request.headers.get("origin")
        if origin is None or origin not in state["settings"].api_origins:
            raise Unauthenticated(
                "Minting a token needs the session cookie and an allowed Origin header."
            )
    return owner


TokenCallerDep = Annotated[str, Depends(token_caller)]
