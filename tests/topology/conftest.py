"""Real Redis topologies started by the tests (`make topology`): a cluster of Valkey processes
with a replica per primary (tests/topology/serve.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

# The sandbox over real HTTP, as tests/integration uses it.
from tests.integration.conftest import sandbox, sandbox_handle  # noqa: F401
from tests.topology.serve import Cluster, start_cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """Three primaries, the slots split among them, and a replica of each (cluster-replicas 1)."""
    servers = start_cluster(3)
    yield servers
    servers.stop()
