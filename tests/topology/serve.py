"""Real Redis topologies for the tests, built from Valkey processes as an operator would build them.

- `start_cluster()`: 3 primaries and 3 replicas (`cluster-replicas 1`), the slots split among the
  primaries by CLUSTER ADDSLOTSRANGE, the nodes joined by CLUSTER MEET, each replica attached by
  CLUSTER REPLICATE. `cluster-node-timeout` is 1 s, so a killed primary is failed over in a
  couple of seconds rather than the default 15.
- `start_sentinels()`: a primary, a replica and 3 Sentinels with quorum 2 (a majority), each
  returned once it knows the other two and the replica: a failover can then be agreed.

`TEST_TOPOLOGY=cluster|sentinel` makes the suite's `redis_url` fixture (tests/conftest.py) start
one, so the integration suites run against it (`make topology`). By hand:
`python -m tests.topology.serve cluster` prints the URL and serves until interrupted.
"""

from __future__ import annotations

import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError

from tests.ports import HOST
from tests.redis_server import RedisServer, SentinelProcess, start_redis_server, start_sentinel
from tests.waiting import wait_until

TOPOLOGIES = ("cluster", "sentinel")
SERVICE = "bffprimary"
NODE_TIMEOUT_MS = 1000
SLOTS = 16384


def _client(port: int) -> Redis:
    return Redis(host=HOST, port=port, socket_timeout=10, decode_responses=True)


def _command(port: int, *args: object) -> object:
    with _client(port) as client:
        return client.execute_command(*args)


def _answers(port: int, *args: object) -> object:
    try:
        return _command(port, *args)
    except (OSError, RedisError):
        return None


@dataclass
class Cluster:
    """A Redis Cluster of real Valkey processes; `primaries[i]` is replicated by `replicas[i]`
    as started (a failover swaps their roles: `holder` says who serves a key now)."""

    primaries: list[RedisServer]
    replicas: list[RedisServer]

    @property
    def nodes(self) -> list[RedisServer]:
        return self.primaries + self.replicas

    @property
    def url(self) -> str:
        # Every node as a startup node: a client started after a primary died still finds the
        # cluster through the others.
        return "redis+cluster://" + ",".join(f"{HOST}:{node.port}" for node in self.nodes)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def holder(self, key: str) -> RedisServer:
        """The node serving `key`'s slot now, as the first live node sees the cluster."""
        for asking in self.nodes:
            slot = _answers(asking.port, "CLUSTER", "KEYSLOT", key)
            ranges = _answers(asking.port, "CLUSTER", "SLOTS")
            if slot is None or not isinstance(ranges, list):
                continue
            for low, high, primary, *_ in ranges:
                if int(low) <= int(str(slot)) <= int(high):
                    return next(node for node in self.nodes if node.port == int(primary[1]))
        raise LookupError(f"no live node knows who serves {key!r}")


def replicated(primary: RedisServer, key: str) -> None:
    """Returns once `primary`'s replica has every write the primary acknowledged so far. Redis
    replicates asynchronously: a primary SIGKILLed before its replica caught up takes its last
    acknowledged writes with it, which no client can be asked to survive. A write of `key` (in
    a slot `primary` serves) and WAIT for one replica: the replica's offset then covers every
    earlier write, from any connection (one ordered replication stream)."""
    with _client(primary.port) as client:
        client.set(key, "1", ex=60)
        acknowledged = client.execute_command("WAIT", 1, 10_000)
    if int(str(acknowledged)) < 1:
        raise RuntimeError(f"the replica of {primary.port} did not catch up within 10 s")


def _node_id(port: int) -> str:
    return str(_command(port, "CLUSTER", "MYID"))


def _knows_every_node(port: int, count: int) -> bool:
    nodes = str(_command(port, "CLUSTER", "NODES")).strip().splitlines()
    return len(nodes) == count and not any("handshake" in line for line in nodes)


def _replica_online(primary: int) -> bool:
    info = _command(primary, "INFO", "replication")
    return (
        isinstance(info, dict)
        and int(info.get("connected_slaves", 0)) >= 1
        and all(
            value.get("state") == "online"
            for name, value in info.items()
            if name.startswith("slave") and isinstance(value, dict)
        )
    )


def _cluster_ok(port: int) -> bool:
    return "cluster_state:ok" in str(_command(port, "CLUSTER", "INFO"))


def start_cluster(primaries: int = 3) -> Cluster:
    """`primaries` primaries with one replica each, every node reporting `cluster_state:ok` and
    every replica in sync, before it returns."""
    cluster = Cluster([], [])
    try:
        for _ in range(primaries):
            cluster.primaries.append(start_redis_server(cluster=True))
        for _ in range(primaries):
            cluster.replicas.append(start_redis_server(cluster=True))
        for node in cluster.nodes:
            # Fail over after 1 s without a primary; a replica whatever its data's age (these
            # replicas are in sync: the test writes nothing while one is catching up).
            _command(node.port, "CONFIG", "SET", "cluster-node-timeout", NODE_TIMEOUT_MS)
            _command(node.port, "CONFIG", "SET", "cluster-replica-validity-factor", 0)
        bounds = [round(i * SLOTS / primaries) for i in range(primaries + 1)]
        for node, low, high in zip(cluster.primaries, bounds, bounds[1:], strict=False):
            _command(node.port, "CLUSTER", "ADDSLOTSRANGE", low, high - 1)
        first = cluster.primaries[0].port
        for node in cluster.nodes[1:]:
            _command(first, "CLUSTER", "MEET", HOST, node.port)
        for node in cluster.nodes:
            wait_until(
                partial(_knows_every_node, node.port, len(cluster.nodes)),
                what=f"node {node.port} to know all {len(cluster.nodes)} nodes",
            )
        for primary, replica in zip(cluster.primaries, cluster.replicas, strict=True):
            _command(replica.port, "CLUSTER", "REPLICATE", _node_id(primary.port))
        for primary in cluster.primaries:
            wait_until(
                partial(_replica_online, primary.port),
                what=f"primary {primary.port}'s replica to be in sync",
            )
        for node in cluster.nodes:
            wait_until(partial(_cluster_ok, node.port), what="cluster_state:ok on every node")
    except BaseException:
        cluster.stop()
        raise
    return cluster


@dataclass
class Sentinels:
    """A primary and its replica, watched by Sentinels that agree on a failover by majority."""

    primary: RedisServer
    replica: RedisServer
    sentinels: list[SentinelProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        hosts = ",".join(f"{HOST}:{sentinel.port}" for sentinel in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}"

    def primary_port(self) -> int | None:
        """The primary's port as the first Sentinel that answers names it."""
        for sentinel in self.sentinels:
            reply = _answers(sentinel.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
            if isinstance(reply, list) and reply:
                return int(reply[1])
        return None

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        self.replica.stop()
        self.primary.stop()


def _sentinel_ready(port: int, others: int, quorum: int) -> bool:
    state = _answers(port, "SENTINEL", "MASTER", SERVICE)  # redis-py parses it into a dict
    if not isinstance(state, dict):
        return False
    return (
        int(state.get("num-other-sentinels", 0)) >= others
        and int(state.get("num-slaves", 0)) >= 1
        and int(state.get("quorum", 0)) == quorum
    )


def start_sentinels(directory: Path, count: int = 3) -> Sentinels:
    """A primary, a replica in sync and `count` Sentinels with quorum `count // 2 + 1`, each of
    which knows the others and the replica."""
    primary = start_redis_server()
    watched = Sentinels(primary, start_redis_server(replica_of=primary.port))
    quorum = count // 2 + 1
    try:
        wait_until(partial(_replica_online, primary.port), what="the replica to be in sync")
        for _ in range(count):
            watched.sentinels.append(start_sentinel(directory, primary.port, SERVICE))
        for sentinel in watched.sentinels:
            _command(sentinel.port, "SENTINEL", "SET", SERVICE, "quorum", quorum)
        for sentinel in watched.sentinels:
            wait_until(
                partial(_sentinel_ready, sentinel.port, count - 1, quorum),
                what=f"Sentinel {sentinel.port} to know the other Sentinels and the replica",
                timeout=60,
            )
    except BaseException:
        watched.stop()
        raise
    return watched


@contextmanager
def topology(name: str) -> Iterator[str]:
    """The URL of a running topology `name` (cluster or sentinel), stopped on exit."""
    if name == "cluster":
        cluster = start_cluster()
        try:
            yield cluster.url
        finally:
            cluster.stop()
    elif name == "sentinel":
        with tempfile.TemporaryDirectory(prefix="bff-sentinels-") as directory:
            watched = start_sentinels(Path(directory))
            try:
                yield watched.url
            finally:
                watched.stop()
    else:
        raise ValueError(f"TEST_TOPOLOGY is one of {', '.join(TOPOLOGIES)}, not {name!r}")


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in TOPOLOGIES:
        sys.stderr.write(f"usage: python -m tests.topology.serve {{{'|'.join(TOPOLOGIES)}}}\n")
        return 2
    with topology(argv[0]) as url, suppress(KeyboardInterrupt):
        sys.stdout.write(f"{url}\n")
        sys.stdout.flush()
        threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
