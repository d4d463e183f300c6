"""A circuit breaker: after repeated failures, stop calling Flinks for a while, then probe.

Closed: calls go through; `failure_threshold` consecutive failures (no answer, 5xx, 429) open
it. Open: calls fail at once with `FlinksCircuitOpen` (no request leaves), for `reset_after`
seconds. Then one call is let through as a probe: success closes the circuit, failure opens it
again. Per process: each replica decides for itself, with no shared state to go wrong.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum

from app.flinks.errors import FlinksCircuitOpen


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        reset_after: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1 or reset_after <= 0:
            raise ValueError("failure_threshold must be >= 1 and reset_after > 0")
        self.failure_threshold = failure_threshold
        self.reset_after = reset_after
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._probing or self._clock() - self._opened_at >= self.reset_after:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def before_call(self, endpoint: str) -> None:
        """Raises FlinksCircuitOpen unless this call may go out (closed, or the one probe)."""
        if self._opened_at is None:
            return
        waited = self._clock() - self._opened_at
        if waited >= self.reset_after and not self._probing:
            self._probing = True
            return
        retry_after = max(self.reset_after - waited, 1.0)
        raise FlinksCircuitOpen(
            f"Flinks {endpoint} is not called: too many recent failures",
            endpoint=endpoint,
            retry_after=retry_after,
        )

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._probing = False

    def record_failure(self) -> None:
        self._failures += 1
        if self._probing or self._failures >= self.failure_threshold:
            self._opened_at = self._clock()
            self._probing = False
