"""Graceful shutdown: on SIGTERM readiness turns 503 at once, while the server lets requests
in flight finish before the lifespan closes the clients."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

log = logging.getLogger("app.draining")

_Handler = Callable[[int, FrameType | None], Any] | int | None


class Drain:
    def __init__(self) -> None:
        self.active = False
        self._previous: _Handler = None

    def start(self) -> None:
        if not self.active:
            self.active = True
            log.info("app.draining")

    def install(self) -> None:
        """Chain a SIGTERM handler in front of the server's own (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            return
        self._previous = signal.getsignal(signal.SIGTERM)
        previous = self._previous

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            self.start()
            if callable(previous):
                previous(signum, frame)

        signal.signal(signal.SIGTERM, on_sigterm)

    def uninstall(self) -> None:
        if self._previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None
