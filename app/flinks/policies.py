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
    """Seconds. httpx's read timeout bounds each wait for bytes, so for these small bodies it
    is in effect the time Flinks takes to answer.

    - `authorize_read`: a live /Authorize logs in at the bank and can take minutes (Flinks
      dispatches to the background only after 210 s). 55 s keeps the BFF's own answer under the
      60 s idle timeout of common load balancers, so the user gets our 504 rather than a cut
      connection. A timed-out live /Authorize is never repeated.
    - `mint_read`, `oauth_read`: short calls that do no bank work.
    """

    connect: float = 3.0
    write: float = 5.0
    pool: float = 2.0
    mint_read: float = 5.0
    authorize_read: float = 55.0
    oauth_read: float = 10.0

    def with_read(self, read: float) -> httpx.Timeout:
        return httpx.Timeout(connect=self.connect, read=read, write=self.write, pool=self.pool)


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
