"""Rate limits shared by every replica through Redis: per client address and browser session.

An IPv6 client is counted per network (BFF_RATE_LIMIT_IPV6_PREFIX, a /64 by default): one
subscriber is routed a whole /64 and can rotate through its addresses at will, so counting
single addresses would hand it a fresh bucket per request. An IPv4-mapped IPv6 address
(::ffff:a.b.c.d, what a dual-stack socket reports for an IPv4 peer) counts as that IPv4 address.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from app.errors import RateLimited
from app.flows.records import session_hash
from app.store import PREFIX, RedisClient, run_scripts

# Fixed windows: the first hit starts a window and sets its expiry, in the same atomic step.
# One key per call: counters live in different hash slots (Redis Cluster refuses a script across
# slots), so `RateCounters.hit` sends one call per counter in one round trip (`run_scripts`). They
# are not folded into the flow a route creates: that is in the flow's own slot, and a refused
# request must create nothing.
_HIT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {count, ttl}
"""


def rate_key(scope: str, identity: str) -> str:
    digest = hashlib.sha256(identity.encode()).hexdigest()[:32]
    return f"{PREFIX}rate:{scope}:{digest}"


class RateCounters:
    """Fixed-window hit counters in Redis, shared by every replica."""

    def __init__(self, redis: RedisClient) -> None:
        self._redis = redis
        self._hit = redis.register_script(_HIT)

    async def hit(self, counters: Sequence[tuple[str, str]], window: int) -> list[tuple[int, int]]:
        """Count one hit on each (scope, identity) counter in its current window: for each,
        (hits so far, seconds left in the window). Redis keys these by identity digests."""
        calls = [(self._hit, [rate_key(scope, who)], [window]) for scope, who in counters]
        answers = await run_scripts(self._redis, calls)
        return [(int(count), int(ttl)) for count, ttl in answers]


@dataclass(frozen=True, slots=True)
class Limits:
    window: int
    per_ip: int
    per_session: int
    ipv6_prefix: int = 64


class RateLimiter:
    def __init__(self, counters: RateCounters, limits: Limits) -> None:
        self.counters = counters
        self.limits = limits

    async def check(self, action: str, *, client_ip: str, session: str | None) -> None:
        """Count this request; RateLimited (429 + Retry-After) once a limit is passed."""
        checks = [("ip", address_bucket(client_ip, self.limits.ipv6_prefix), self.limits.per_ip)]
        if session is not None:
            checks.append(("session", session_hash(session), self.limits.per_session))
        checks = [check for check in checks if check[2] > 0]
        if not checks:
            return
        counts = await self.counters.hit(
            [(f"{action}:{kind}", who) for kind, who, _ in checks], self.limits.window
        )
        for (kind, _, limit), (count, seconds_left) in zip(checks, counts, strict=True):
            if count > limit:
                raise RateLimited(
                    f"Too many requests from this {'session' if kind == 'session' else 'address'};"
                    " try again later.",
                    headers={"Retry-After": str(max(seconds_left, 1))},
                )


def address_bucket(address: str, ipv6_prefix: int) -> str:
    """What one client address is counted as: an IPv4 address, or its IPv6 network."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return address  # not an IP (a unix socket peer): counted as itself
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, ipv6_prefix), strict=False))
    return str(ip)


class ClientAddress:
    """The client's IP: the peer, or X-Forwarded-For's nearest untrusted hop when the peer is
    one of our configured proxies. Without trusted proxies the header is ignored."""

    def __init__(self, trusted: Iterable[str]) -> None:
        self.trusted = tuple(ipaddress.ip_network(net, strict=False) for net in trusted)

    def trusts(self, peer: str) -> bool:
        """Whether `peer` is one of the configured proxies."""
        return bool(self.trusted) and self._is_trusted(peer)

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.strip())
        except ValueError:
            return False
        # A dual-stack socket reports an IPv4 peer as ::ffff:a.b.c.d.
        mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
        return any(ip in net or (mapped is not None and mapped in net) for net in self.trusted)

    def resolve(self, peer: str | None, forwarded_for: str | None) -> str:
        peer = peer or "unknown"
        if not self.trusted or not forwarded_for or not self._is_trusted(peer):
            return peer
        for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
            if not self._is_trusted(hop):
                try:
                    return str(ipaddress.ip_address(hop))
                except ValueError:
                    return peer
        return peer
