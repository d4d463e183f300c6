"""The background work of one process: every task is registered here, and the app's lifespan
closes the registry on shutdown (each task is cancelled and awaited), so no task outlives the
clients it uses and none is fire-and-forget.

A cancelled flow task gives up its lease on the way out (app/flows/runner.py): another replica
then takes the flow over from Flinks' answer, so cancelling loses no outcome.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Coroutine
from typing import Any, TypeVar

from app.errors import ShuttingDown

log = logging.getLogger("app.flows.tasks")

T = TypeVar("T")


class TaskRegistry:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    @property
    def running(self) -> int:
        return len(self._tasks)

    @property
    def closed(self) -> bool:
        return self._closed

    def spawn(self, work: Coroutine[Any, Any, T], *, name: str) -> asyncio.Task[T]:
        """Runs `work` as a task this registry owns; ShuttingDown once it is closed."""
        if self._closed:
            work.close()
            raise ShuttingDown
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            # The type only: an exception's message may quote a value that must not be logged.
            log.error("task.failed", extra={"task": task.get_name(), "error": type(error).__name__})

    async def close(self) -> None:
        """Cancels every task and waits for each to finish its clean-up."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
            log.info("tasks.cancelled", extra={"count": len(tasks)})


# How often a task that ignored its cancellation is cancelled again while being stopped.
RECANCEL_EVERY = 0.1


async def stop_tasks(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancels each task until it has ended. One cancellation is not always enough: a library's
    own timeout that fires with it may turn it into its own error (redis-py's TimeoutError,
    asyncio.timeout's TimeoutError on Python 3.11), which a loop that outlives Redis errors
    catches and goes on; it is cancelled again until it ends."""
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_EVERY)
    for task in tasks:
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("task.failed", extra={"task": task.get_name(), "error": type(error).__name__})


def consumer_name() -> str:
    """A name for this process's consumer in a Redis Streams group: its host and pid, and a
    random part (a process restarted with the same pid is a new consumer, not the dead one)."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
