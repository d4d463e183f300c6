"""Where the app reads the time: injected, so tests can move time on instead of waiting for it.

`now()` is wall time in UTC (flow expiry, timestamps, lease expiry); `monotonic()` measures
intervals (the circuit breaker, deadlines); `sleep()` waits an interval (the browser's wait for
a Flinks call, polling a pending authorization, renewing a lease). Redis TTLs run on Redis' own
clock and are not affected.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current wall time, timezone-aware, in UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back, for measuring intervals."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Returns once `seconds` have passed on this clock."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))
