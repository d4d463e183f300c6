"""Whether this instance may take traffic: the one question `/readyz` asks."""

from __future__ import annotations

import asyncio

from app.draining import Drain
from app.errors import ShuttingDown, StoreMisconfigured, StoreUnavailable
from app.store import Store

TIMEOUT = 1.0


class Readiness:
    """Ready unless draining, or Redis does not answer, or it may evict any key (security.md
    E2: an evicting Redis may drop OAuth state or a flow at any time). `eviction_policy` is
    what the start-up check found."""

    def __init__(
        self, store: Store, drain: Drain, *, eviction_policy: str | None, timeout: float = TIMEOUT
    ) -> None:
        self._store = store
        self._drain = drain
        self.eviction_policy = eviction_policy
        self._timeout = timeout

    @property
    def evicting(self) -> bool:
        return bool(self.eviction_policy and self.eviction_policy.startswith("allkeys-"))

    async def check(self) -> None:
        """Returns when ready; raises the AppError that says why not."""
        if self._drain.active:
            raise ShuttingDown
        if self.evicting:
            raise StoreMisconfigured
        try:
            async with asyncio.timeout(self._timeout):
                await self._store.ping()
        except TimeoutError as exc:
            raise StoreUnavailable from exc
