"""The one way the suite waits for something real to happen (a port to open, a record to appear).

A wait polls a condition until it holds, with a deadline that grows with the machine's load: a
test run beside another one on two cores may take many times longer to start a server, and a
deadline is there to catch a hang, not to measure speed. On timeout it says what it waited for.

TEST_WAIT_SCALE (a number, default: the load per CPU, at least 1) multiplies every deadline.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

_MAX_LOAD_SCALE = 8.0


class WaitTimeout(AssertionError):
    """What was awaited did not happen in time (an AssertionError: it fails the test)."""


def scaled(seconds: float) -> float:
    """`seconds` stretched for this machine: TEST_WAIT_SCALE if set, else its load per CPU."""
    configured = os.environ.get("TEST_WAIT_SCALE")
    if configured:
        return seconds * float(configured)
    load_per_cpu = os.getloadavg()[0] / (os.cpu_count() or 1)
    return seconds * min(max(1.0, load_per_cpu), _MAX_LOAD_SCALE)


def _timeout(what: str, seconds: float, last: object, detail: Callable[[], str] | None) -> str:
    message = f"timed out after {seconds:.0f} s waiting for {what}"
    if last is not None and not isinstance(last, bool):
        message += f" (last seen: {last!r})"
    if detail is not None:
        message += f"\n{detail()}"
    return message


def wait_until(
    condition: Callable[[], T],
    *,
    what: str,
    timeout: float = 30.0,
    interval: float = 0.02,
    detail: Callable[[], str] | None = None,
    pause: Callable[[float], object] = time.sleep,
) -> T:
    """Polls `condition` until it returns something truthy, and returns that. `detail` adds to
    the failure message (a server's output, say); `pause` waits between polls (a browser page
    waits in a way that lets its events through)."""
    seconds = scaled(timeout)
    deadline = time.monotonic() + seconds
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise WaitTimeout(_timeout(what, seconds, result, detail))
        pause(interval)


async def wait_until_async(
    condition: Callable[[], Awaitable[T]],
    *,
    what: str,
    timeout: float = 30.0,  # noqa: ASYNC109 - scaled for load, which asyncio.timeout is not
    interval: float = 0.02,
) -> T:
    """`wait_until` for a condition that must be awaited, without blocking the event loop."""
    seconds = scaled(timeout)
    deadline = time.monotonic() + seconds
    while True:
        result = await condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise WaitTimeout(_timeout(what, seconds, result, None))
        await asyncio.sleep(interval)
