"""Per-call timeouts and the retry policy of the Flinks client."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from random import random as _uniform

import httpx


@dataclass(frozen=True, slots=True)
class FlinksTimeouts:
    """Seconds. Per attempt: httpx's read timeout bounds each wait for bytes, so for these small
    bodies it is in effect the time Flinks takes to answer. Per operation: a deadline over all
    its attempts, backoffs and the token mints it needs (see `Deadline`).

    - `authorize_read`: a live /Authorize logs in at the bank and can take minutes: Flinks
      dispatches it to the background (202) only after 210 s, so 240 s waits for that answer.
      The caller runs it in the background, never holding a browser request that long. A
      timed-out live /Authorize is never repeated.
    - `mint_read`, `oauth_read`: short calls that do no bank work.
    - `authorize_deadline`: a live /Authorize or an MFA answer, with the token mint and the
      pre-send retries it takes.
    - `deadline`: every other operation (a mint with its retries, the OAuth start, a cached
      /Authorize).
    - `min_attempt`: a retry is not started with less time than this left before the deadline:
      it could hardly finish, and would turn the error we have into a timeout.
    """

    connect: float = 3.0
    write: float = 5.0
    pool: float = 2.0
    mint_read: float = 5.0
    authorize_read: float = 240.0
    oauth_read: float = 10.0
    deadline: float = 10.0
    authorize_deadline: float = 250.0
    min_attempt: float = 1.0

    def __post_init__(self) -> None:
        if min(self.connect, self.write, self.pool, self.deadline, self.authorize_deadline) <= 0:
            raise ValueError("timeouts and deadlines must be > 0")

    def for_attempt(self, read: float, remaining: float) -> httpx.Timeout:
        """This attempt's timeouts, none longer than the time left before the deadline."""
        return httpx.Timeout(
            connect=min(self.connect, remaining),
            read=min(read, remaining),
            write=min(self.write, remaining),
            pool=min(self.pool, remaining),
        )


@dataclass(frozen=True, slots=True)
class Deadline:
    """A point in time on `clock` (monotonic seconds) by which an operation must be over."""

    at: float
    clock: Callable[[], float]

    @classmethod
    def after(cls, seconds: float, clock: Callable[[], float]) -> Deadline:
        return cls(clock() + seconds, clock)

    def remaining(self) -> float:
        return self.at - self.clock()

    def within(self, seconds: float) -> Deadline:
        """A deadline for a part of this operation: `seconds` from now, but never later."""
        return Deadline(min(self.at, self.clock() + seconds), self.clock)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """At most `attempts` tries, with capped exponential backoff and full jitter between them.

    A `Retry-After` longer than `cap` ends the retries (the caller passes it on instead of
    holding the request); a shorter one is waited out in full.
    """

    attempts: int = 3
    base: float = 0.1
    cap: float = 1.0
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    random: Callable[[], float] = _uniform

    def __post_init__(self) -> None:
        if self.attempts < 1 or not 0 < self.base <= self.cap:
            raise ValueError("RetryPolicy needs attempts >= 1 and 0 < base <= cap")

    def delay_before_retry(self, attempt: int, retry_after: float | None = None) -> float | None:
        """Seconds to wait before try `attempt + 1`, or None if there is to be no retry."""
        if attempt >= self.attempts or (retry_after is not None and retry_after > self.cap):
            return None
        backoff = self.random() * min(self.cap, self.base * 2.0 ** (attempt - 1))
        return backoff if retry_after is None else max(backoff, retry_after)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or HTTP-date); None if absent/invalid."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
