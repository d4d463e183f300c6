"""Browser sessions: the anonymous owner of flows when the caller has no other identity.

The cookie holds a random session id; Redis maps the id's hash to the owner that flows are bound
to. Only ids the BFF issued resolve, so a planted cookie value is simply unknown. The id is
rotated when a flow connects: whoever knew the old id (a fixated cookie) no longer reaches the
owner's flows, while the owner keeps them under the new id.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.store import Store  # a type only, as in app/flows/service.py

SESSION_ID = re.compile(r"[A-Za-z0-9_-]{43}")


def new_session_id() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class BrowserSession:
    session_id: str
    owner: str


class BrowserSessions:
    def __init__(self, store: Store, *, ttl: int) -> None:
        self._store = store
        self._ttl = ttl

    async def resolve(self, session_id: str | None) -> BrowserSession | None:
        """The session behind a cookie value, or None for anything the BFF did not issue."""
        if session_id is None or not SESSION_ID.fullmatch(session_id):
            return None
        owner = await self._store.session_owner(session_id)
        return None if owner is None else BrowserSession(session_id, owner)

    def new(self, owner: str | None = None) -> BrowserSession:
        """A fresh session, not yet kept: nothing resolves it until `keep`. Without `owner`
        (session mode) it stands for a new anonymous owner; with one (an identified caller),
        for that owner, so that the steps a browser reaches by navigation can find it."""
        return BrowserSession(new_session_id(), owner or secrets.token_urlsafe(16))

    async def keep(self, session: BrowserSession) -> None:
        await self._store.create_session(session.session_id, session.owner, self._ttl)

    async def rotate(self, session: BrowserSession) -> BrowserSession | None:
        """A new id for the same owner; the old id stops resolving. None if another request
        rotated it first (that request's answer carries the new id)."""
        new_id = new_session_id()
        moved = await self._store.move_session(session.session_id, new_id, session.owner, self._ttl)
        return BrowserSession(new_id, session.owner) if moved else None
