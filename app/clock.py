"""Where the app reads the time: injected, so tests can move time on instead of waiting for it.

`now()` is wall time in UTC (flow expiry, timestamps); `monotonic()` measures intervals (the
circuit breaker). Redis TTLs run on Redis' own clock and are not affected.
"""

from __future__ import annotations

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


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()
