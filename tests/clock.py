"""A clock the test moves on by hand, for code that takes an `app.clock.Clock`."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta


class FakeClock:
    """`sleep` returns only once `advance` has moved the clock past its end, from any thread
    (an app served in a thread has its own event loop)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime.now(UTC)
        self._monotonic = 1000.0
        self._sleepers: list[tuple[float, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._lock = threading.Lock()

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._monotonic

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        woken: asyncio.Future[None] = loop.create_future()
        with self._lock:
            entry = (self._monotonic + seconds, loop, woken)
            self._sleepers.append(entry)
        try:
            await woken
        finally:
            with self._lock:
                if entry in self._sleepers:
                    self._sleepers.remove(entry)

    @property
    def sleeping(self) -> int:
        """How many sleeps are waiting for the clock to move."""
        return len(self._sleepers)

    def advance(self, seconds: float) -> None:
        """Moves both clocks on by `seconds`, and wakes the sleeps that are then over."""
        with self._lock:
            self._now += timedelta(seconds=seconds)
            self._monotonic += seconds
            due = [entry for entry in self._sleepers if entry[0] <= self._monotonic]
            for entry in due:
                self._sleepers.remove(entry)
        for _, loop, woken in due:
            loop.call_soon_threadsafe(_wake, woken)


def _wake(woken: asyncio.Future[None]) -> None:
    if not woken.done():
        woken.set_result(None)
