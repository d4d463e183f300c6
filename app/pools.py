"""The outbound connection pools, sized to the requests one process lets in (BFF_MAX_INFLIGHT).

A request that got past the in-flight cap must not fail for want of a connection while the
services behind are healthy:

- HTTP out (Flinks): a request holds a connection for a whole Flinks call, up to a live
  /Authorize's 55 s, so the pool has one per request in flight plus spares for what is not
  counted in flight; a request never waits for one (the Flinks client would wait 2 s at most).
  The cap's default (1,024) lets 500 flows whose Flinks calls take 200 ms each run at once
  without a 503; what is in flight waiting on Flinks costs memory, not CPU.
- Open files: the cap, the pool and Redis need about 2.4 sockets per request in flight;
  the soft limit is raised to that at start-up (`raise_file_limit`).
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
import resource

from redis.asyncio import RedisCluster
from redis.asyncio.connection import AbstractConnection

from app.store import POOL_SIZE, RedisClient

log = logging.getLogger("app.pools")

SPARE_CONNECTIONS = 16


def http_pool_size(max_inflight: int) -> int:
    return max_inflight + SPARE_CONNECTIONS


def file_descriptors_needed(max_inflight: int) -> int:
    """A socket per request in flight, one per pooled Flinks connection, the Redis pool (per
    node on a cluster: a margin), and the process's own files."""
    return max_inflight + http_pool_size(max_inflight) + 4 * POOL_SIZE + 256


def raise_file_limit(max_inflight: int) -> None:
    """Raises the soft limit on open files to what BFF_MAX_INFLIGHT needs (as far as the hard
    limit allows): 1,024, the usual soft limit, would refuse connections well before the cap.
    Short of it, says so once: requests then fail with EMFILE instead of 503 overloaded."""
    needed = file_descriptors_needed(max_inflight)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if raised > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
    if raised < needed:
        log.warning(
            "process.file_limit_low",
            extra={"limit": raised, "needed": needed, "setting": "BFF_MAX_INFLIGHT"},
        )


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
