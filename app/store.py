"""Everything the BFF keeps in Redis: connection, key schema, typed records, atomic steps."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from app.errors import StoreUnavailable

# Worst case for one command: (1 try + 1 retry) x 0.5 s socket timeout + a short backoff,
# well inside the budget a request may spend waiting on the store.
SOCKET_TIMEOUT = 0.5
CONNECT_TIMEOUT = 0.5
POOL_WAIT = 0.5
RETRIES = 1


def connect_redis(url: str, *, max_connections: int = 64) -> Redis:
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=POOL_WAIT,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=SOCKET_TIMEOUT,
        health_check_interval=30,
        client_name="flinks-bff",
        retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.1), RETRIES),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        decode_responses=True,
    )
    return Redis(connection_pool=pool)


class Store:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def ping(self) -> None:
        try:
            await self.redis.ping()
        except (RedisError, OSError) as exc:
            raise StoreUnavailable from exc
