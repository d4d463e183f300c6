"""The rate-limit counters (app/ratelimit.py) against a real Redis-protocol server."""

from __future__ import annotations

from redis.asyncio import Redis

from app.ratelimit import RateCounters
from app.store import PREFIX


async def test_rate_counters_count_in_one_step_and_expire_with_their_window(
    redis: Redis,
) -> None:
    counters = RateCounters(redis)
    hits = [("mint:ip", "127.0.0.1"), ("mint:session", "abc")]
    assert await counters.hit(hits, 30) == [(1, 30), (1, 30)]
    assert [count for count, _ in await counters.hit(hits, 30)] == [2, 2]
    assert [count for count, _ in await counters.hit(hits[:1], 30)] == [3]
    keys = [key async for key in redis.scan_iter(f"{PREFIX}rate:*")]
    assert len(keys) == 2
    assert all([0 < await redis.ttl(key) <= 30 for key in keys])
    assert not any("127.0.0.1" in key for key in keys)  # identities are digested
