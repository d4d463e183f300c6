"""A circuit breaker: after repeated failures, stop calling Flinks for a while, then probe.

Closed: calls go through; `failure_threshold` consecutive failures open it. Open: calls are
refused at once with `FlinksCircuitOpen` (no request leaves) for `reset_after` seconds. Then one
call at a time goes out as the probe: success closes the circuit, failure opens it again. Per
process: each replica decides for itself, with no shared state to go wrong.

Every call runs as `async with breaker.call(endpoint) as call: ...`, and its `__aexit__` is the
one place a call is settled, whichever way the body ends:

- with the verdict the body recorded (`call.record(failed=...)`), if any: the caller knows
  which answers count against Flinks (for the client: no answer, 5xx, 429);
- else a normal exit is a success and an exception a failure;
- a cancellation (or another BaseException) is no verdict: it says nothing about Flinks, so the
  count stays as it was and a probe's slot is freed for the next call to probe.

No library fit: purgatory 3 reads `time.time()` (no injectable, monotonic clock) and lets every
half-open call through; aiobreaker has had no release since 2021.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum
from types import TracebackType

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
        self._refused = 0

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._probing or self._clock() - self._opened_at >= self.reset_after:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    @property
    def refused(self) -> int:
        """Calls refused so far because the circuit was open (or a probe was out)."""
        return self._refused

    def call(self, endpoint: str) -> BreakerCall:
        """One guarded call: `async with breaker.call(endpoint) as call: ...`. Entering raises
        `FlinksCircuitOpen` unless the call may go out (closed, or the one probe)."""
        return BreakerCall(self, endpoint)

    def _admit(self, endpoint: str) -> bool:
        """True if the admitted call is the probe."""
        if self._opened_at is None:
            return False
        waited = self._clock() - self._opened_at
        if waited >= self.reset_after and not self._probing:
            self._probing = True
            return True
        self._refused += 1
        raise FlinksCircuitOpen(
            f"Flinks {endpoint} is not called: too many recent failures",
            endpoint=endpoint,
            retry_after=max(self.reset_after - waited, 1.0),
        )

    def _settle(self, *, probe: bool, failed: bool | None) -> None:
        """`failed` None: no verdict (cancelled)."""
        if probe:
            self._probing = False
            if failed is True:
                self._open()
            elif failed is False:
                self._close()
            return
        if self._opened_at is not None or failed is None:
            # While open only the probe decides: a late answer to a call that went out before
            # the circuit opened says nothing about Flinks now.
            return
        if not failed:
            self._failures = 0
            return
        self._failures += 1
        if self._failures >= self.failure_threshold:
            self._open()

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._failures = 0

    def _close(self) -> None:
        self._opened_at = None
        self._failures = 0


class BreakerCall:
    """The async context manager of one call; single use."""

    __slots__ = ("_breaker", "_endpoint", "_entered", "_failed", "_probe")

    def __init__(self, breaker: CircuitBreaker, endpoint: str) -> None:
        self._breaker = breaker
        self._endpoint = endpoint
        self._entered = False
        self._probe = False
        self._failed: bool | None = None

    def record(self, *, failed: bool) -> None:
        """The body's verdict on the call; the last one recorded counts."""
        self._failed = failed

    async def __aenter__(self) -> BreakerCall:
        if self._entered:
            raise RuntimeError("a BreakerCall is used once")
        self._entered = True
        self._probe = self._breaker._admit(self._endpoint)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        failed: bool | None
        if self._failed is not None:
            failed = self._failed
        elif exc is None:
            failed = False
        elif isinstance(exc, Exception):
            failed = True
        else:  # cancelled: no verdict
            failed = None
        self._breaker._settle(probe=self._probe, failed=failed)
