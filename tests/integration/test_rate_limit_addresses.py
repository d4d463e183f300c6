"""Rate limits count an IPv6 client per network, not per address it can rotate through."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from app.main import create_app
from app.ratelimit import ClientAddress, address_bucket
from app.settings import Settings
from tests.conftest import issue_session, serve_in_process
from tests.integration.conftest import Sandbox, bff_settings


async def _statuses(settings: Any, addresses: list[str]) -> list[int]:
    """One token mint per address, each as if a trusted proxy forwarded it from that client."""
    async with serve_in_process(create_app(settings)) as client:
        await issue_session(client, str(settings.redis_url))
        return [
            (
                await client.post(
                    "/v1/authorize-tokens", json={}, headers={"X-Forwarded-For": address}
                )
            ).status_code
            for address in addresses
        ]


def _limited(redis_url: str, sandbox: Sandbox, per_ip: int, **overrides: object) -> Settings:
    return bff_settings(
        redis_url,
        sandbox,
        BFF_RATE_LIMIT_IP=per_ip,
        BFF_TRUSTED_PROXIES="127.0.0.1",
        **overrides,
    )


async def test_rotating_addresses_inside_one_ipv6_64_share_one_bucket(
    redis_url: str, redis: Redis, sandbox: Sandbox
) -> None:
    rotating = [f"2001:db8:1:2::{i:x}" for i in range(1, 5)] + ["2001:db8:1:2:ffff:ffff:ffff:1"]
    neighbour = "2001:db8:1:3::1"  # the next /64: another subscriber
    statuses = await _statuses(_limited(redis_url, sandbox, 3), [*rotating, neighbour])
    assert statuses == [201, 201, 201, 429, 429, 201]


async def test_the_ipv6_prefix_is_configurable(
    redis_url: str, redis: Redis, sandbox: Sandbox
) -> None:
    settings = _limited(redis_url, sandbox, 1, BFF_RATE_LIMIT_IPV6_PREFIX=48)
    statuses = await _statuses(settings, ["2001:db8:1:2::1", "2001:db8:1:3::1", "2001:db9::1"])
    assert statuses == [201, 429, 201]


async def test_an_ipv4_mapped_address_counts_as_the_ipv4_address(
    redis_url: str, redis: Redis, sandbox: Sandbox
) -> None:
    addresses = ["203.0.113.9", "::ffff:203.0.113.9", "::ffff:cb00:7109", "203.0.113.10"]
    statuses = await _statuses(_limited(redis_url, sandbox, 2), addresses)
    assert statuses == [201, 201, 429, 201]


@pytest.mark.parametrize(
    ("address", "prefix", "bucket"),
    [
        ("2001:db8::1", 64, "2001:db8::/64"),
        ("2001:DB8:0:0:ffff::9", 64, "2001:db8::/64"),
        ("2001:db8:0:1::1", 56, "2001:db8::/56"),
        ("2001:db8::1", 128, "2001:db8::1/128"),
        ("::ffff:198.51.100.4", 64, "198.51.100.4"),
        ("198.51.100.4", 64, "198.51.100.4"),
        ("unknown", 64, "unknown"),
    ],
)
def test_address_buckets(address: str, prefix: int, bucket: str) -> None:
    assert address_bucket(address, prefix) == bucket


def test_a_trusted_proxy_is_recognised_behind_a_dual_stack_socket() -> None:
    resolver = ClientAddress(["127.0.0.1"])
    assert resolver.resolve("::ffff:127.0.0.1", "198.51.100.7") == "198.51.100.7"
    assert resolver.resolve("::ffff:127.0.0.2", "198.51.100.7") == "::ffff:127.0.0.2"


async def test_a_forged_forwarded_for_line_before_the_proxys_own_is_not_believed(
    redis_url: str, redis: Redis, sandbox: Sandbox
) -> None:
    """A proxy that appends its own X-Forwarded-For line after the client's: the client's first
    line (forged, different each time) must not give it a fresh bucket."""
    settings = _limited(redis_url, sandbox, per_ip=1)
    async with serve_in_process(create_app(settings)) as client:
        await issue_session(client, str(settings.redis_url))
        statuses = []
        for forged in ("198.51.100.1", "198.51.100.2"):
            headers = [("X-Forwarded-For", forged), ("X-Forwarded-For", "203.0.113.5")]
            response = await client.post("/v1/authorize-tokens", json={}, headers=headers)
            statuses.append(response.status_code)
    assert statuses == [201, 429]
