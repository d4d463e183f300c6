"""Rate limits as a route dependency: per client IP and per browser session, through Redis."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Request

from app.api.deps import lifespan_state
from app.api.identity import CallerDep


def rate_limited(action: str) -> Any:
    """Counts the request against `action`'s limits; 429 rate_limited once one is passed."""

    async def check(request: Request, session: CallerDep) -> None:
        state = lifespan_state(request)
        peer = request.client.host if request.client else None
        # Every X-Forwarded-For line, in order: a proxy that appends its own line after the
        # client's must not let the client's (forged) first line decide.
        forwarded = ",".join(request.headers.getlist("x-forwarded-for")) or None
        client_ip = state["client_address"].resolve(peer, forwarded)
        await state["limiter"].check(action, client_ip=client_ip, session=session)

    return Depends(check)
