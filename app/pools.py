"""The outbound connection pools, sized to the requests one process lets in (BFF_MAX_INFLIGHT).

A request that got past the in-flight cap must not fail for want of a connection while the
services behind are healthy:

- httpx (Flinks): a request holds a connection for a whole Flinks call, up to a live
  /Authorize's 55 s, so the pool has one per request in flight plus spares for what is not
  counted in flight; a request never waits for one (the Flinks client would wait 2 s at most).
- Redis: a request holds a connection for one command at a time (well under a millisecond), so
  a fixed pool serves any number in flight, as long as a request may wait for a free one long
  enough (app/store.py POOL_WAIT). The pool is opened at start-up, while the event loop is
  idle: opened during a burst, each connect waits behind every request on the loop and times
  out against a healthy Redis (300 simultaneous flow starts on two busy cores: connects took
  2-3 s, against a 0.5 s connect timeout).
"""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import RedisCluster
from redis.asyncio.connection import AbstractConnection

from app.store import RedisClient

log = logging.getLogger("app.pools")

SPARE_CONNECTIONS = 16


def http_pool_size(max_inflight: int) -> int:
    return max_inflight + SPARE_CONNECTIONS


async def open_redis_pool(redis: RedisClient) -> None:
    """Opens every connection of the client's pool now. A Redis that is down is not an error
    here: readiness reports it, and requests get 503 store_unavailable until it is back.
    A cluster client keeps a pool per node, opened as it learns the nodes: left to it."""
    if isinstance(redis, RedisCluster):
        return
    pool = redis.connection_pool
    size: int = pool.max_connections
    acquiring = (pool.get_connection() for _ in range(size))  # type: ignore[no-untyped-call]
    results = await asyncio.gather(*acquiring, return_exceptions=True)
    opened = [result for result in results if isinstance(result, AbstractConnection)]
    for connection in opened:
        await pool.release(connection)
    if len(opened) < size:
        log.warning("redis.pool_not_opened", extra={"opened": len(opened), "size": size})
