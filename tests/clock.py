"""A clock the test moves on by hand, for code that takes an `app.clock.Clock`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class FakeClock:
    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime.now(UTC)
        self._monotonic = 1000.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> None:
        """Moves both clocks on by `seconds`."""
        self._now += timedelta(seconds=seconds)
        self._monotonic += seconds
