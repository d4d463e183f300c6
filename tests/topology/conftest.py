"""Real Redis topologies started by the tests (`make topology`): a cluster of Valkey processes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

# The sandbox over real HTTP, as tests/integration uses it.
from tests.integration.conftest import sandbox, sandbox_handle  # noqa: F401
from tests.redis_server import RedisClusterServers, start_redis_cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterServers]:
    """Three primaries, the slots split among them."""
    servers = start_redis_cluster(3)
    yield servers
    servers.stop()
