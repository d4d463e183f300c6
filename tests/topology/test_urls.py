"""REDIS_URL (and REDIS_CLUSTER) name the topology: which URLs production accepts, and the
client each one gives."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.connection import Connection, SSLConnection
from redis.asyncio.sentinel import SentinelConnectionPool

from app.settings import ConfigurationError, load_settings
from app.store import close_redis, connect_redis
from tests.foundation.test_settings import PRODUCTION_OK


@pytest.mark.parametrize(
    ("redis_url", "plaintext_allowed"),
    [
        ("redis+cluster://127.0.0.1:7000,127.0.0.1:7001,[::1]:7002", False),
        ("redis+sentinel://localhost:26379,127.0.0.1:26380/mymaster", False),
        ("redis+cluster://10.0.0.1:7000,10.0.0.2:7000", True),
        ("redis+sentinel://sentinel.internal:26379/mymaster", True),
    ],
)
def test_production_accepts_cluster_and_sentinel_on_loopback_or_when_told(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, plaintext_allowed: bool
) -> None:
    monkeypatch.setenv("BFF_ALLOW_PLAINTEXT_REDIS", str(plaintext_allowed).lower())
    for name, value in {**PRODUCTION_OK, "REDIS_URL": redis_url}.items():
        monkeypatch.setenv(name, value)
    assert str(load_settings(_env_file=None).redis_url) == redis_url


@pytest.mark.parametrize(
    "redis_url",
    [
        "redis+cluster://10.0.0.1:7000,10.0.0.2:7000",
        "redis+cluster://127.0.0.1:7000,10.0.0.2:7000",  # one remote host is enough to refuse
        "redis+sentinel://sentinel.internal:26379/mymaster",
    ],
)
def test_production_refuses_cluster_and_sentinel_across_the_network_by_default(
    monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    for name, value in {**PRODUCTION_OK, "REDIS_URL": redis_url}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as refused:
        load_settings(_env_file=None)
    assert [p for p in refused.value.problems if "REDIS_URL" in p], refused.value.problems


async def test_each_scheme_gives_its_client() -> None:
    cluster = connect_redis("redis+cluster://127.0.0.1:7000,[::1]:7001")
    assert isinstance(cluster, RedisCluster)
    await close_redis(cluster)

    sentinel = connect_redis("redis+sentinel://u:p%40ss@127.0.0.1:26379,127.0.0.1:26380/mymaster")
    assert isinstance(sentinel, Redis)
    pool = sentinel.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "mymaster"
    assert pool.connection_kwargs["password"] == "p@ss"
    assert [
        s.connection_pool.connection_kwargs["port"] for s in pool.sentinel_manager.sentinels
    ] == [
        26379,
        26380,
    ]
    await close_redis(sentinel)

    with pytest.raises(ValueError, match="service"):
        connect_redis("redis+sentinel://127.0.0.1:26379")


def test_redis_cluster_true_takes_a_rediss_url_with_several_hosts_in_production(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """REDIS_CLUSTER=true: a managed cluster's TLS address, every node over verified TLS."""
    url = "rediss://bff:s3cret@node-a.internal:6380,node-b.internal:6380"
    for name, value in {**PRODUCTION_OK, "REDIS_URL": url, "REDIS_CLUSTER": "true"}.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(_env_file=None)
    assert settings.redis_cluster
    assert str(settings.redis_url) == url


async def test_redis_cluster_true_reads_redis_and_rediss_urls_as_startup_nodes() -> None:
    plain = connect_redis("redis://127.0.0.1:7000,[::1]:7001,redis.internal", cluster=True)
    assert isinstance(plain, RedisCluster)
    assert list(plain.nodes_manager.startup_nodes) == [
        "127.0.0.1:7000",
        "::1:7001",
        "redis.internal:6379",  # the port left out: Redis' own
    ]
    assert plain.connection_kwargs["connection_class"] is Connection
    await close_redis(plain)

    tls = connect_redis("rediss://u:p%40ss@node-a.internal:6380/0", cluster=True)
    assert isinstance(tls, RedisCluster)
    assert list(tls.nodes_manager.startup_nodes) == ["node-a.internal:6380"]
    assert tls.connection_kwargs["connection_class"] is SSLConnection
    assert tls.connection_kwargs["ssl_cert_reqs"] == "required"  # the certificate is verified
    assert tls.connection_kwargs["password"] == "p@ss"
    await close_redis(tls)

    single = connect_redis("redis://127.0.0.1:7000/0")  # without the flag: one server
    assert not isinstance(single, RedisCluster)
    await close_redis(single)


@pytest.mark.parametrize(
    ("url", "cluster", "problem"),
    [
        ("redis://127.0.0.1:7000,127.0.0.1:7001", False, "REDIS_CLUSTER=true"),
        ("redis://127.0.0.1:7000/3", True, "database 0 only"),
        ("redis+sentinel://127.0.0.1:26379/mymaster", True, "redis:// or rediss://"),
        ("unix:///run/redis.sock", True, "redis:// or rediss://"),
    ],
)
def test_a_url_that_does_not_fit_the_topology_is_refused(
    url: str, cluster: bool, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        connect_redis(url, cluster=cluster)
