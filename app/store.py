"""Everything the BFF keeps in Redis: connection, key schema, atomic steps, sealing.

The records themselves are the domain's (app/flows/records.py); this module stores them.

Keys (every one written with its TTL in the same command):
- `bff:v1:flow:{<flow_id>}`   the flow record (JSON), TTL = flow TTL
- `bff:v1:login:{<flow_id>}`  the loginId, AES-GCM encrypted, TTL = login TTL
- `bff:v1:lease:{<flow_id>}`  who is asking Flinks about the flow right now, and until when
  (`<holder> <until, ms since the epoch>`); the key's own TTL (twice the lease's) only clears
  it away, the time in the value decides (on the app's injected clock)
- `bff:v1:state:{<flow_id>}`  the flow's OAuth state, as SHA-256(state || session), TTL = state
  TTL. The state the bank hands back is `<flow_id>.<secret>` (app/flows/service.py): the
  callback finds the flow's slot in it, and consumes the state and reads the flow in one script.
  A native app's flow is bound to `NATIVE_BINDING` instead of a session, and to its PKCE
  challenge.
- `bff:v1:handoff:{<flow_id>}`  the SHA-256 of a native flow's one-time handoff code, TTL = handoff
  TTL; redeemed (or burnt) by one script together with the flow's claim
- `bff:v1:ticket:{<flow_id>}`  a native Connect flow's one-time ticket to open the hosted page
  (its SHA-256, with the flow's Connect options), TTL = flow TTL; taken with GETDEL
- `bff:v1:page:{<flow_id>}`  the hosted page that opened with it: the SHA-256 of the page's
  binding cookie (and the options again, for a reload), TTL = flow TTL
- `bff:v1:rate:<scope>:<sha256(who)>`  a rate-limit counter, TTL = its window (app/ratelimit.py)
- `bff:v1:session:<sha256(session id)>`  the owner a browser session id stands for, TTL = session
  TTL; only ids written here were issued by the BFF
- `bff:v1:link:{<link_id>}`  a link (app/flows/records.py `LinkRecord`, its loginId sealed). The
  id is a keyed hash (HMAC) of the loginId, so this key is also the loginId's ownership claim;
  TTL = link TTL (a reservation: flow TTL; a tombstone: one day)
- `bff:v1:owner:<sha256(owner)>`  the set of an owner's link ids, TTL = link TTL
- `bff:v1:data:{<link_id>}`  the link's account data as the browser may see it, sealed, TTL =
  data TTL; `bff:v1:datajob:{<link_id>}` the Flinks RequestId being prepared (sealed), and
  `bff:v1:datapoll:{<link_id>}` the 10-second gap between two Flinks calls for it
- `bff:v1:flinks:{inbox}`  Flinks' webhooks in (app/flows/webhooks.py): a Stream of verified
  deliveries, each body sealed, read by the consumer group `bff` and deleted once processed;
  `bff:v1:flinksseen:{inbox}:<sha256>` a delivery already taken (de-duplication), TTL = 6 h
  (Flinks retries 10 times, 30 minutes apart). Same hash tag: one script checks and enqueues.
- `bff:v1:outbox:{<flow_id or link_id>}`  the events out a change made (app/flows/events.py), a
  Stream written by the same script or transaction as the change (same slot), emptied as they
  are relayed to the delivery keys under `{events}` (see "the BFF's events out" below)

The braces are Redis Cluster hash tags: a flow's record, loginId, lease and OAuth state live in
the same slot, so one script can change them together atomically (a new flow and its state:
`Store.create_flow`; the callback: `Store.consume_state`). Every other operation touches one
key, so no command spans two slots. Independent commands on keys of different slots go in one
non-transactional pipeline (one round trip; a cluster client splits it by node): the
rate-limit counters of one request (app/ratelimit.py), an owner's link records.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar, cast
from urllib.parse import unquote

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster, Sentinel
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.backoff import ExponentialWithJitterBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from app.errors import StoreUnavailable
from app.flows.records import FlowRecord, LinkRecord, OutboxEvent

PREFIX = "bff:v1:"

# Worst case for one command: (1 try + 1 retry) x 2 s + a short backoff, about 4 s before a
# 503. These are wall-clock timers that also run while the event loop is busy with other
# requests: 0.5-0.8 s gave false 503s against a healthy Redis on a loaded 2-core machine.
SOCKET_TIMEOUT = 2.0
CONNECT_TIMEOUT = 2.0
# A request holds a connection for one command at a time, so a busy but healthy store frees
# one within a loop's lag: waiting this long for it (0.5 s failed healthy requests under load)
# is what lets one fixed pool serve every request in flight (see app/pools.py).
POOL_WAIT = 5.0
RETRIES = 1
# Connections per process, all opened at start-up (app/pools.py).
POOL_SIZE = 64
# A flow's record outlives its expiry by this much, so a late request hears "expired" (410)
# rather than "no such flow" (404).
EXPIRED_NOTICE = 900

T = TypeVar("T")


RedisClient = Redis | RedisCluster


def connect_redis(
    url: str, *, cluster: bool = False, max_connections: int = POOL_SIZE
) -> RedisClient:
    """A client for the topology `url` names, with redis-py's own cluster and sentinel support:
    `redis://`, `rediss://` or `unix://` for one server; `redis+cluster://h:p[,h:p...]` for a
    Redis Cluster (any of its nodes; the client discovers the rest and follows redirects);
    `redis+sentinel://h:p[,h:p...]/service_name` for the primary the Sentinels name.

    `cluster` (REDIS_CLUSTER=true) reads a `redis://` or `rediss://` URL, one host or several,
    as a cluster's startup nodes instead: how managed services hand out a cluster's address,
    and the way to a cluster over TLS (`rediss://`, the certificate verified)."""
    scheme, _, rest = url.partition("://")
    if cluster and scheme not in ("redis", "rediss", "redis+cluster"):
        raise ValueError(f"REDIS_CLUSTER=true takes a redis:// or rediss:// URL, not {scheme}://")
    if "," in rest.partition("/")[0] and scheme in ("redis", "rediss") and not cluster:
        raise ValueError("a REDIS_URL with several hosts is a cluster: set REDIS_CLUSTER=true")
    options: dict[str, Any] = {
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_timeout": SOCKET_TIMEOUT,
        "health_check_interval": 30,
        "client_name": "flinks-bff",
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
        "decode_responses": True,
    }
    if scheme == "redis+cluster" or cluster:
        username, password, nodes, path = _split_hosts(rest, default_port=6379)
        if path.strip("/") not in ("", "0"):
            raise ValueError("a Redis Cluster has database 0 only: drop the /<db> from the URL")
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in nodes],
            username=username,
            password=password,
            max_connections=max_connections,  # per node
            retry=AsyncRetry(ExponentialWithJitterBackoff(base=0.01, cap=0.1), RETRIES),
            ssl=scheme == "rediss",  # verified: redis-py requires the certificate by default
            **options,
        )
    if scheme == "redis+sentinel":
        username, password, nodes, path = _split_hosts(rest)
        service = path.strip("/")
        if not service:
            raise ValueError("a redis+sentinel:// URL names the service: .../service_name")
        timeouts = {"socket_connect_timeout": CONNECT_TIMEOUT, "socket_timeout": SOCKET_TIMEOUT}
        sentinel = Sentinel(nodes, sentinel_kwargs=timeouts)  # type: ignore[no-untyped-call]
        primary: Redis = sentinel.master_for(
            service,
            username=username,
            password=password,
            max_connections=max_connections,
            retry=AsyncRetry(ExponentialWithJitterBackoff(base=0.01, cap=0.1), RETRIES),
            **options,
        )
        return primary
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=POOL_WAIT,
        retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.1), RETRIES),
        **options,
    )
    return Redis(connection_pool=pool)


def _split_hosts(
    rest: str, *, default_port: int | None = None
) -> tuple[str | None, str | None, list[tuple[str, int]], str]:
    """`[user:password@]h:p[,h:p...][/path]` -> (user, password, [(h, p)...], path)."""
    netloc, slash, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, _, secret = userinfo.partition(":")
        username, password = unquote(user) or None, unquote(secret) or None
    nodes = []
    for host_port in hosts.split(","):
        host, colon, port = host_port.rpartition(":")
        if default_port is not None and (not colon or host_port.endswith("]")):
            host, port = host_port, str(default_port)  # `h` or `[::1]`: the port left out
        nodes.append((host.strip("[]"), int(port)))
    return username, password, nodes, slash + path


async def close_redis(redis: RedisClient) -> None:
    """Closes the client and its connections."""
    if isinstance(redis, RedisCluster):
        await redis.aclose()
        return
    pool = redis.connection_pool
    await redis.aclose(close_connection_pool=True)
    if isinstance(pool, SentinelConnectionPool):  # and the connections to the Sentinels
        for sentinel in pool.sentinel_manager.sentinels:
            await sentinel.aclose(close_connection_pool=True)


def _in_slot(kind: str, tag: str) -> str:
    """`bff:v1:<kind>:{<tag>}`: the braces are the Redis Cluster hash tag, so every key of one
    flow (or one link) lives in the same slot and one script may change them together."""
    return f"{PREFIX}{kind}:{{{tag}}}"


def flow_key(flow_id: str) -> str:
    return _in_slot("flow", flow_id)


def login_key(flow_id: str) -> str:
    return _in_slot("login", flow_id)


def lease_key(flow_id: str) -> str:
    return _in_slot("lease", flow_id)


def state_key(flow_id: str) -> str:
    return _in_slot("state", flow_id)


def state_binding(state: str, binding: str) -> str:
    """What the state's key holds: the state bound to a session (or to `NATIVE_BINDING`)."""
    return hashlib.sha256(f"{state}\x00{binding}".encode()).hexdigest()


def session_key(session_id: str) -> str:
    return f"{PREFIX}session:{hashlib.sha256(session_id.encode()).hexdigest()}"


def handoff_key(flow_id: str) -> str:
    return _in_slot("handoff", flow_id)


def ticket_key(flow_id: str) -> str:
    return _in_slot("ticket", flow_id)


def page_key(flow_id: str) -> str:
    return _in_slot("page", flow_id)


def link_key(link_id: str) -> str:
    return _in_slot("link", link_id)


def owner_key(owner: str) -> str:
    digest = hashlib.sha256(owner.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{PREFIX}owner:{digest}"


def data_key(link_id: str) -> str:
    return _in_slot("data", link_id)


def data_job_key(link_id: str) -> str:
    return _in_slot("datajob", link_id)


def data_poll_key(link_id: str) -> str:
    return _in_slot("datapoll", link_id)


async def call_redis(operation: Awaitable[T]) -> T:
    """The command's answer; a Redis that fails or does not answer is StoreUnavailable (503)."""
    try:
        return await operation
    except (RedisError, OSError) as exc:
        raise StoreUnavailable from exc


ScriptCall = tuple[AsyncScript, Sequence[str], Sequence[str | int]]  # script, keys, args


async def run_scripts(
    redis: RedisClient, calls: Sequence[ScriptCall], *commands: tuple[str | int, ...]
) -> list[Any]:
    """Each script call's answer, with `commands` (independent of them, in any slot) sent in the
    same round trip: one non-transactional pipeline on one server (a lone call goes as itself);
    on a cluster, where redis-py pipelines no script, the calls at once beside one pipeline of
    the commands, so that those keep their order (two commands on one key sent separately may
    land on two connections and cross). A server that has not seen a script gets it again.
    Every part is attempted; any failure is StoreUnavailable."""
    if isinstance(redis, RedisCluster) or (len(calls) == 1 and not commands):
        called = (script(keys=keys, args=args) for script, keys, args in calls)
        answers = await call_redis(asyncio.gather(*called, _in_order(redis, commands)))
        return answers[: len(calls)]
    async with redis.pipeline(transaction=False) as pipe:
        for script, keys, args in calls:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        for command in commands:
            pipe.execute_command(*command)
        replies: list[Any] = await call_redis(pipe.execute(raise_on_error=False))
    for reply in replies[len(calls) :]:
        if isinstance(reply, Exception):
            raise StoreUnavailable from reply
    answers = replies[: len(calls)]
    for index, (script, keys, args) in enumerate(calls):
        if isinstance(answers[index], NoScriptError):
            answers[index] = await call_redis(script(keys=keys, args=args))
        elif isinstance(answers[index], Exception):
            raise StoreUnavailable from answers[index]
    return answers


async def _in_order(redis: RedisClient, commands: Sequence[tuple[str | int, ...]]) -> None:
    if not commands:
        return
    async with redis.pipeline() as pipe:
        for command in commands:
            pipe.execute_command(*command)
        await pipe.execute()


class Sealer:
    """AES-GCM with a random nonce; the associated data binds a ciphertext to its key name."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, plaintext: str, context: str) -> str:
        nonce = secrets.token_bytes(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), context.encode())
        return "v1." + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, token: str, context: str) -> str | None:
        if not token.startswith("v1."):
            return None
        try:
            raw = base64.urlsafe_b64decode(token[3:])
            return self._aead.decrypt(raw[:12], raw[12:], context.encode()).decode()
        except (InvalidTag, ValueError):
            return None


# Compare-and-set on a flow: only if the stored version is the one the caller read, so two
# replicas racing on the same flow cannot both win. Optionally writes the loginId, takes the
# flow's lease (ARGV[5]) or lets the caller's go (ARGV[11], its holder) and writes an event to the
# flow's outbox in the same atomic step. KEEPTTL: a transition never extends a flow's life.
CAS_FLOW_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
if cjson.decode(current)['version'] ~= tonumber(ARGV[1]) then return -1 end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
if ARGV[3] ~= '' then redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[4]) end
if ARGV[5] ~= '' then redis.call('SET', KEYS[3], ARGV[5], 'PX', ARGV[6]) end
if ARGV[7] ~= '' then
  redis.call('XADD', KEYS[4], '*', 'id', ARGV[7], 'order', ARGV[8], 'body', ARGV[9],
    'created', ARGV[10])
end
if ARGV[11] ~= '' then
  local held = redis.call('GET', KEYS[3])
  if held and string.match(held, '^(%S+) ') == ARGV[11] then redis.call('DEL', KEYS[3]) end
end
return 1
"""

# A new flow (SET NX: a fresh id) and, for OAuth, its state's binding (KEYS[2], ARGV[3]; '' for
# none), in one atomic step: no one ever sees one without the other. 1 written; 0 the id is taken.
CREATE_FLOW_SCRIPT = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 0 end
if ARGV[3] ~= '' then redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[4]) end
return 1
"""

# Consumes an OAuth state and reads its flow in one step. The state's key holds the binding the
# flow was started with; ARGV are the bindings the caller could present (its session's, then the
# native one). A match deletes the key (single use) and answers {which ARGV matched, the flow
# (nil when gone)}; no match leaves the key alone (a stranger cannot burn the owner's state).
CONSUME_STATE_SCRIPT = """
local stored = redis.call('GET', KEYS[1])
if not stored then return false end
for i, binding in ipairs(ARGV) do
  if stored == binding then
    redis.call('DEL', KEYS[1])
    return {i, redis.call('GET', KEYS[2])}
  end
end
return false
"""

# A lease is `<holder> <until>`; it is free when absent or when `until` (ms) is past `now`.
TAKE_LEASE_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if current then
  local untl = tonumber(string.match(current, ' (%d+)$'))
  if untl and untl > tonumber(ARGV[2]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
"""

# Renews (ARGV[2] = the new value) or, without a new value, releases the caller's own lease.
KEEP_LEASE_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if not current or string.match(current, '^(%S+) ') ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return 1
"""


# Writes a link record if its current status is one of ARGV[2] (`absent` for no record) and,
# unless it is a tombstone, it belongs to ARGV[1]. 1 written; 0 a status not listed (same owner);
# -1 another owner's. ARGV[4] = '0' keeps the record's TTL. A write also puts its event (ARGV[5..8],
# '' for none) in the link's outbox (KEYS[2]).
WRITE_LINK_SCRIPT = """
local current = redis.call('GET', KEYS[1])
local allowed = ',' .. ARGV[2] .. ','
if not current then
  if not string.find(allowed, ',absent,', 1, true) then return 0 end
else
  local record = cjson.decode(current)
  if record['status'] ~= 'deleted' and record['owner'] ~= ARGV[1] then return -1 end
  if not string.find(allowed, ',' .. record['status'] .. ',', 1, true) then return 0 end
end
if ARGV[4] == '0' then redis.call('SET', KEYS[1], ARGV[3], 'KEEPTTL')
else redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[4]) end
if ARGV[5] ~= '' then
  redis.call('XADD', KEYS[2], '*', 'id', ARGV[5], 'order', ARGV[6], 'body', ARGV[7],
    'created', ARGV[8])
end
return 1
"""

# Files a connected link: WRITE_LINK_SCRIPT's checks and write (KEYS[1], ARGV[1..4]), keeping the
# `created_at` of an active record it refreshes; its event (ARGV[5..8]) to the outbox (KEYS[2]);
# the link's cached data dropped (KEYS[3]) and its new data job (KEYS[4], ARGV[9], EX ARGV[10]).
# One step, every key in the link's slot. 1 written; 0 a status not listed; -1 another owner's.
FILE_LINK_SCRIPT = """
local current = redis.call('GET', KEYS[1])
local allowed = ',' .. ARGV[2] .. ','
local record = ARGV[3]
if not current then
  if not string.find(allowed, ',absent,', 1, true) then return 0 end
else
  local existing = cjson.decode(current)
  if existing['status'] ~= 'deleted' and existing['owner'] ~= ARGV[1] then return -1 end
  if not string.find(allowed, ',' .. existing['status'] .. ',', 1, true) then return 0 end
  if existing['status'] == 'active' then
    local filed = cjson.decode(record)
    filed['created_at'] = existing['created_at']
    record = cjson.encode(filed)
  end
end
redis.call('SET', KEYS[1], record, 'EX', ARGV[4])
if ARGV[5] ~= '' then
  redis.call('XADD', KEYS[2], '*', 'id', ARGV[5], 'order', ARGV[6], 'body', ARGV[7],
    'created', ARGV[8])
end
redis.call('DEL', KEYS[3])
redis.call('SET', KEYS[4], ARGV[9], 'EX', ARGV[10])
return 1
"""

# Redeems a native flow's handoff code: the code (its hash, ARGV[1]) must be the one stored; it is
# then burnt whatever follows. The flow must be at the version read (ARGV[4]), carry the
# challenge S256(verifier) (ARGV[2]) and belong to the caller (ARGV[3]); it is then claimed
# (ARGV[5]) with its lease (ARGV[6], PX ARGV[7]). 1 redeemed; 0 refused.
REDEEM_HANDOFF_SCRIPT = """
local stored = redis.call('GET', KEYS[1])
if not stored or stored ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
local current = redis.call('GET', KEYS[2])
if not current then return 0 end
local flow = cjson.decode(current)
if flow['version'] ~= tonumber(ARGV[4]) or flow['code_challenge'] ~= ARGV[2]
  or flow['session_hash'] ~= ARGV[3] or not flow['awaiting_handoff'] then return 0 end
redis.call('SET', KEYS[2], ARGV[5], 'KEEPTTL')
redis.call('SET', KEYS[3], ARGV[6], 'PX', ARGV[7])
return 1
"""

LinkWrite = Literal["written", "kept", "elsewhere"]
_LINK_WRITE: dict[int, LinkWrite] = {1: "written", 0: "kept", -1: "elsewhere"}


@dataclass(frozen=True, slots=True)
class Lease:
    """The right to ask Flinks about one flow until `until` (on the app's clock). `holder` is a
    random name of this holding; only it renews or releases the lease."""

    flow_id: str
    until: datetime
    ttl_ms: int
    holder: str = field(default_factory=lambda: secrets.token_urlsafe(12), repr=False)

    def value(self) -> str:
        return f"{self.holder} {_ms(self.until)}"

    @property
    def key_ttl_ms(self) -> int:
        # The key outlives the lease: whether it is still held is read from the time in it.
        return 2 * self.ttl_ms


def _derive(key: bytes, purpose: bytes) -> bytes:
    """A key of its own for `purpose`, so the encryption key is never used as an HMAC key."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(key)


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


class Store:
    def __init__(
        self,
        redis: RedisClient,
        *,
        encryption_key: bytes,
        flow_ttl: int,
        state_ttl: int,
        login_ttl: int,
    ) -> None:
        self._redis = redis
        self.sealer = Sealer(encryption_key)
        self._link_id_key = _derive(encryption_key, b"flinks-bff link id v1")
        self.flow_ttl = flow_ttl
        self.state_ttl = state_ttl
        self.login_ttl = login_ttl
        self._cas = redis.register_script(CAS_FLOW_SCRIPT)
        self._create_flow = redis.register_script(CREATE_FLOW_SCRIPT)
        self._consume_state = redis.register_script(CONSUME_STATE_SCRIPT)
        self._write_link = redis.register_script(WRITE_LINK_SCRIPT)
        self._file_link = redis.register_script(FILE_LINK_SCRIPT)
        self._redeem_handoff = redis.register_script(REDEEM_HANDOFF_SCRIPT)
        self._take_lease = redis.register_script(TAKE_LEASE_SCRIPT)
        self._keep_lease = redis.register_script(KEEP_LEASE_SCRIPT)

    async def eviction_policy(self) -> str | None:
        """Redis' maxmemory-policy, or None where CONFIG is not allowed (managed services)."""
        try:
            reply = await self._redis.config_get("maxmemory-policy")
        except (RedisError, OSError):
            return None
        policy = reply.get("maxmemory-policy")
        return str(policy) if policy is not None else None

    async def ping(self) -> None:
        """Every primary of a cluster answers; or the one server (a Sentinel's current primary)."""
        if isinstance(self._redis, RedisCluster):
            await call_redis(self._redis.ping(target_nodes=RedisCluster.PRIMARIES))
        else:
            await call_redis(cast(Awaitable[object], self._redis.ping()))

    async def create_flow(
        self, flow: FlowRecord, *, state: str | None = None, session: str | None = None
    ) -> None:
        """Writes a new flow and, for OAuth, its state (`<flow_id>.<secret>`) bound to the
        session, both with their TTLs: one command (one script with a state: the state's key
        is in the flow's slot)."""
        if state is None:
            created = await call_redis(
                self._redis.set(
                    flow_key(flow.flow_id),
                    flow.model_dump_json(),
                    ex=self.flow_ttl + EXPIRED_NOTICE,
                    nx=True,
                )
            )
        else:
            if not session:
                raise ValueError("an OAuth state is bound to a session")
            if state.partition(".")[0] != flow.flow_id:
                raise ValueError("an OAuth state names its flow: <flow_id>.<secret>")
            created = await call_redis(
                self._create_flow(
                    keys=[flow_key(flow.flow_id), state_key(flow.flow_id)],
                    args=[
                        flow.model_dump_json(),
                        self.flow_ttl + EXPIRED_NOTICE,
                        state_binding(state, session),
                        self.state_ttl,
                    ],
                )
            )
        if not created:
            raise StoreUnavailable("could not reserve a fresh flow id")

    async def get_flow(self, flow_id: str) -> FlowRecord | None:
        raw = await call_redis(self._redis.get(flow_key(flow_id)))
        return None if raw is None else FlowRecord.model_validate_json(raw)

    async def replace_flow(
        self,
        expected_version: int,
        flow: FlowRecord,
        *,
        login_id: str | None = None,
        lease: Lease | None = None,
        event: OutboxEvent | None = None,
        release: Lease | None = None,
    ) -> bool:
        """Compare-and-set; False if the flow changed (or vanished) since it was read. With
        `lease`, the transition also takes the flow's lease (whoever held it); with `release`,
        it lets that lease go if its holder still has it (as `release_lease`); with `event`,
        the event is in the flow's outbox if and only if the transition happened."""
        sealed_login = (
            self.sealer.seal(login_id, login_key(flow.flow_id)) if login_id is not None else ""
        )
        flow_id = flow.flow_id
        result = await call_redis(
            self._cas(
                keys=[
                    flow_key(flow_id),
                    login_key(flow_id),
                    lease_key(flow_id),
                    outbox_key(flow_id),
                ],
                args=[
                    expected_version,
                    flow.model_dump_json(),
                    sealed_login,
                    self.login_ttl,
                    lease.value() if lease else "",
                    lease.key_ttl_ms if lease else 0,
                    *_event_args(event),
                    release.holder if release else "",
                ],
            )
        )
        return int(result) == 1

    def new_lease(self, flow_id: str, now: datetime, ttl: timedelta) -> Lease:
        """A lease on the flow from `now`, for `ttl`, with a holder name of its own."""
        return Lease(flow_id, now + ttl, int(ttl.total_seconds() * 1000))

    async def take_lease(self, lease: Lease, now: datetime) -> bool:
        """Takes the flow's lease if no one holds it at `now` (absent, or its time is up)."""
        result = await call_redis(
            self._take_lease(
                keys=[lease_key(lease.flow_id)],
                args=[lease.value(), _ms(now), lease.key_ttl_ms],
            )
        )
        return int(result) == 1

    async def renew_lease(self, lease: Lease) -> bool:
        """Moves the lease's time on to `lease.until`; False if the holder no longer has it."""
        result = await call_redis(
            self._keep_lease(
                keys=[lease_key(lease.flow_id)],
                args=[lease.holder, lease.value(), lease.key_ttl_ms],
            )
        )
        return int(result) == 1

    async def release_lease(self, lease: Lease) -> bool:
        """Lets the lease go, if the holder still has it."""
        result = await call_redis(
            self._keep_lease(keys=[lease_key(lease.flow_id)], args=[lease.holder, "", 0])
        )
        return int(result) == 1

    async def consume_state(
        self, state: str, bindings: Sequence[str]
    ) -> tuple[str, FlowRecord | None] | None:
        """Consumes the state if it is bound to one of `bindings` (tried in order) and reads its
        flow, in one script: (the binding it was bound to, the flow, None if gone). None when
        the state is unknown, used or bound to none of them; then it is left as it was."""
        flow_id, dot, _ = state.partition(".")
        if not dot or not flow_id or not bindings:
            return None
        reply = await call_redis(
            self._consume_state(
                keys=[state_key(flow_id), flow_key(flow_id)],
                args=[state_binding(state, binding) for binding in bindings],
            )
        )
        if not reply:
            return None
        index, raw = reply
        flow = None if raw is None else FlowRecord.model_validate_json(raw)
        return bindings[int(index) - 1], flow

    async def get_login_id(self, flow_id: str) -> str | None:
        sealed = await call_redis(self._redis.get(login_key(flow_id)))
        if sealed is None:
            return None
        return self.sealer.open(str(sealed), login_key(flow_id))

    async def create_session(self, session_id: str, owner: str, ttl: int) -> None:
        if not await call_redis(self._redis.set(session_key(session_id), owner, ex=ttl, nx=True)):
            raise StoreUnavailable("could not reserve a fresh session id")

    async def session_owner(self, session_id: str) -> str | None:
        owner = await call_redis(self._redis.get(session_key(session_id)))
        return None if owner is None else str(owner)

    async def move_session(self, old_id: str, new_id: str, owner: str, ttl: int) -> bool:
        """`owner`'s session `old_id` is now `new_id`, and `old_id` is gone; False (and neither
        exists) if `old_id` was not `owner`'s any more: of two racing moves only one gets it
        (GETDEL). One round trip: the two ids are in different slots, so a pipeline rather than
        a script, and the new id is written before it is known the move will stand (undone
        then, a round trip only on the losing side of a race)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.getdel(session_key(old_id))
            pipe.set(session_key(new_id), owner, ex=ttl, nx=True)
            moved, written = await call_redis(pipe.execute())
        if moved is None or str(moved) != owner:
            if written:
                await call_redis(self._redis.delete(session_key(new_id)))
            return False
        if not written:
            raise StoreUnavailable("could not reserve a fresh session id")
        return True

    def seal(self, value: str, flow_id: str) -> str:
        return self.sealer.seal(value, flow_key(flow_id))

    def unseal(self, sealed: str, flow_id: str) -> str | None:
        return self.sealer.open(sealed, flow_key(flow_id))

    # -- native handoff ----------------------------------------------------------------------

    async def put_handoff(self, flow_id: str, code_hash: str, ttl: int) -> None:
        await call_redis(self._redis.set(handoff_key(flow_id), code_hash, ex=ttl))

    async def redeem_handoff(
        self,
        flow: FlowRecord,
        *,
        code_hash: str,
        challenge: str,
        owner_hash: str,
        claimed: FlowRecord,
        lease: Lease,
    ) -> bool:
        """One atomic step: the code checked and burnt, the flow's challenge and owner checked,
        the flow claimed with its lease. False for any refusal (which one is not told)."""
        flow_id = flow.flow_id
        result = await call_redis(
            self._redeem_handoff(
                keys=[handoff_key(flow_id), flow_key(flow_id), lease_key(flow_id)],
                args=[
                    code_hash,
                    challenge,
                    owner_hash,
                    flow.version,
                    claimed.model_dump_json(),
                    lease.value(),
                    lease.key_ttl_ms,
                ],
            )
        )
        return int(result) == 1

    # -- hosted Connect page (app/flows/hosted.py) -------------------------------------------

    async def put_ticket(self, flow_id: str, value: str) -> None:
        await call_redis(self._redis.set(ticket_key(flow_id), value, ex=self.flow_ttl))

    async def take_ticket(self, flow_id: str) -> str | None:
        """The ticket's record, deleted in the same step (GETDEL): single use."""
        value = await call_redis(self._redis.getdel(ticket_key(flow_id)))
        return None if value is None else str(value)

    async def put_page(self, flow_id: str, value: str) -> None:
        await call_redis(self._redis.set(page_key(flow_id), value, ex=self.flow_ttl))

    async def get_page(self, flow_id: str) -> str | None:
        value = await call_redis(self._redis.get(page_key(flow_id)))
        return None if value is None else str(value)

    # -- links -------------------------------------------------------------------------------

    def link_id_for(self, login_id: str) -> str:
        """The id of the link a loginId makes: HMAC-SHA256 under a key derived from the
        encryption key, so it names the loginId without revealing it (132 bits, URL-safe)."""
        mac = hmac.new(self._link_id_key, login_id.strip().lower().encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()).decode()[:22]

    def seal_login(self, login_id: str, link_id: str) -> str:
        return self.sealer.seal(login_id, link_key(link_id))

    def open_login(self, link: LinkRecord) -> str | None:
        if link.sealed_login_id is None:
            return None
        return self.sealer.open(link.sealed_login_id, link_key(link.link_id))

    async def get_link(self, link_id: str) -> LinkRecord | None:
        raw = await call_redis(self._redis.get(link_key(link_id)))
        return None if raw is None else LinkRecord.model_validate_json(raw)

    async def write_link(
        self,
        link: LinkRecord,
        *,
        when: tuple[str, ...],
        ttl: int | None,
        event: OutboxEvent | None = None,
    ) -> LinkWrite:
        """Writes `link` if its stored status is one of `when` ("absent": no record) and it is
        `link.owner`'s (or a tombstone). `ttl` None keeps the stored TTL. `event` goes to the
        link's outbox with the write, and only with it."""
        result = await call_redis(
            self._write_link(
                keys=[link_key(link.link_id), outbox_key(link.link_id)],
                args=[
                    link.owner,
                    ",".join(when),
                    link.model_dump_json(),
                    ttl or 0,
                    *_event_args(event),
                ],
            )
        )
        return _LINK_WRITE[int(result)]

    async def file_link(
        self,
        link: LinkRecord,
        *,
        when: tuple[str, ...],
        ttl: int,
        event: OutboxEvent | None,
        job: str,
        job_ttl: int,
    ) -> LinkWrite:
        """`write_link` for a connected flow's link, in one script: an active record it
        refreshes keeps its `created_at`; with the write, the event goes to the link's outbox,
        the cached data is dropped and `job` (the RequestId to read the data with) is kept.

        The link joins its owner's index (`owner_links`) in the same round trip. The index is
        in the owner's slot, so not in the script: it is added at once and taken back in the
        rare case the record turned out to be another owner's (its readers check each record's
        owner anyway)."""
        link_id = link.link_id
        owner = owner_key(link.owner)
        keys = [link_key(link_id), outbox_key(link_id), data_key(link_id), data_job_key(link_id)]
        args = [
            link.owner,
            ",".join(when),
            link.model_dump_json(),
            ttl,
            *_event_args(event),
            self.sealer.seal(job, data_job_key(link_id)),
            job_ttl,
        ]
        [result] = await run_scripts(
            self._redis,
            [(self._file_link, keys, args)],
            ("SADD", owner, link_id),
            ("EXPIRE", owner, ttl),
        )
        written = _LINK_WRITE[int(result)]
        if written == "elsewhere":
            await self.remove_owner_link(link.owner, link_id)
        return written

    async def remove_owner_link(self, owner: str, link_id: str) -> None:
        await call_redis(self._redis.srem(owner_key(owner), link_id))

    async def owner_links(self, owner: str) -> list[LinkRecord]:
        """The records behind an owner's link ids (one non-transactional pipeline: the records
        live in other slots), in no particular order; ids whose record is gone are skipped."""
        ids = await call_redis(cast(Awaitable[set[str]], self._redis.smembers(owner_key(owner))))
        if not ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for link_id in sorted(ids):
                pipe.get(link_key(link_id))
            raws = await call_redis(pipe.execute())
        return [LinkRecord.model_validate_json(raw) for raw in raws if raw is not None]

    # -- account data ------------------------------------------------------------------------

    async def get_data(self, link_id: str) -> str | None:
        sealed = await call_redis(self._redis.get(data_key(link_id)))
        return None if sealed is None else self.sealer.open(str(sealed), data_key(link_id))

    async def put_data(
        self, link_id: str, plain: str, ttl: int, *, event: OutboxEvent | None = None
    ) -> None:
        """The link's data, and its job gone (the data is what the job was for), and `event`
        in the link's outbox: one transaction, every key in the link's slot."""
        sealed = self.sealer.seal(plain, data_key(link_id))
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(data_key(link_id), sealed, ex=ttl)
            pipe.delete(data_job_key(link_id))
            if event is not None:
                pipe.xadd(outbox_key(link_id), _outbox_fields(event))
            await call_redis(pipe.execute())

    async def get_data_job(self, link_id: str) -> str | None:
        sealed = await call_redis(self._redis.get(data_job_key(link_id)))
        return None if sealed is None else self.sealer.open(str(sealed), data_job_key(link_id))

    async def put_data_job(
        self, link_id: str, plain: str, ttl: int, *, drop_data: bool = False
    ) -> None:
        """The RequestId being prepared; with `drop_data`, the cached data goes in the same
        transaction (a new connection's data replaces what an earlier one left)."""
        sealed = self.sealer.seal(plain, data_job_key(link_id))
        async with self._redis.pipeline(transaction=True) as pipe:
            if drop_data:
                pipe.delete(data_key(link_id))
            pipe.set(data_job_key(link_id), sealed, ex=ttl)
            await call_redis(pipe.execute())

    async def drop_data(self, link_id: str) -> None:
        await call_redis(self._redis.delete(data_key(link_id), data_job_key(link_id)))

    async def data_poll_wait(self, link_id: str, gap_ms: int) -> int:
        """0 if the caller may ask Flinks about this link's data now (the next `gap_ms` are then
        reserved); otherwise the milliseconds until it may."""
        key = data_poll_key(link_id)
        if await call_redis(self._redis.set(key, "1", px=gap_ms, nx=True)):
            return 0
        remaining = await call_redis(self._redis.pttl(key))
        return max(int(remaining), 1)


# -- Redis Streams consumer groups -------------------------------------------------------------


class ConsumerGroup:
    """One stream read through one consumer group (Flinks' webhooks in, the BFF's events out):
    what a dead consumer left pending is claimed by another (XAUTOCLAIM). A stream or group
    that is gone (a flushed Redis) is made again and read as empty."""

    def __init__(self, redis: RedisClient, stream: str, group: str) -> None:
        self._redis = redis
        self.stream = stream
        self.group = group

    async def ensure(self) -> None:
        try:
            await call_redis(
                self._redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
            )
        except StoreUnavailable as exc:
            if not _is_reply(exc, "BUSYGROUP"):  # it exists already
                raise

    async def read(self, consumer: str, count: int, block_ms: int) -> list[Any]:
        """New entries for `consumer` (waiting up to `block_ms` for one), as (id, fields)."""
        try:
            reply = await call_redis(
                cast(
                    Awaitable[list[Any] | None],
                    self._redis.xreadgroup(
                        self.group, consumer, {self.stream: ">"}, count=count, block=block_ms
                    ),
                )
            )
        except StoreUnavailable as exc:
            if not _is_reply(exc, "NOGROUP"):
                raise
            await self.ensure()
            return []
        return [entry for _, entries in reply or () for entry in entries]

    async def claim(self, consumer: str, min_idle_ms: int, count: int) -> list[Any]:
        """Entries another consumer took and left unacknowledged for `min_idle_ms`."""
        try:
            reply = await call_redis(
                self._redis.xautoclaim(
                    self.stream, self.group, consumer, min_idle_ms, start_id="0-0", count=count
                )
            )
        except StoreUnavailable as exc:
            if not _is_reply(exc, "NOGROUP"):
                raise
            await self.ensure()
            return []
        return [entry for entry in reply[1] if entry is not None and entry[1] is not None]

    async def pending(self) -> int:
        """Entries taken by a consumer and not yet acknowledged."""
        try:
            summary = await call_redis(self._redis.xpending(self.stream, self.group))
        except StoreUnavailable as exc:
            if not _is_reply(exc, "NOGROUP"):
                raise
            return 0
        return int(summary["pending"])

    async def leave(self, consumer: str) -> None:
        """Removes `consumer` from the group if it holds nothing pending (best effort): what it
        holds stays for another to claim."""
        with contextlib.suppress(RedisError, OSError):
            held = await self._redis.xpending_range(
                self.stream, self.group, min="-", max="+", count=1, consumername=consumer
            )
            if not held:
                await self._redis.xgroup_delconsumer(self.stream, self.group, consumer)


# -- Flinks webhooks in ------------------------------------------------------------------------

INBOX_KEY = f"{PREFIX}flinks:{{inbox}}"
INBOX_GROUP = "bff"
# One entry: the sealed body. Deliveries are small (a GetAccountsDetail body), and the stream is
# emptied as they are processed, so no MAXLEN: trimming could drop one not yet processed.
INBOX_FIELD = "event"

# Takes a delivery once: its de-duplication key and the stream entry in one atomic step, so a
# Redis failure between them cannot mark a delivery seen that was never queued. 1 queued; 0 seen.
ENQUEUE_WEBHOOK_SCRIPT = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
redis.call('XADD', KEYS[2], '*', ARGV[2], ARGV[3])
return 1
"""


def inbox_seen_key(digest: str) -> str:
    return f"{PREFIX}flinksseen:{{inbox}}:{digest}"


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """One delivery from the inbox stream: its entry id and its body (None: unreadable, e.g.
    sealed under another key)."""

    entry_id: str
    body: str | None = field(repr=False)


class WebhookInbox:
    """The stream of Flinks' webhooks in, read through a consumer group so that what a dead
    consumer left pending is claimed by another (XAUTOCLAIM)."""

    def __init__(self, redis: RedisClient, sealer: Sealer) -> None:
        self._redis = redis
        self._sealer = sealer
        self._enqueue = redis.register_script(ENQUEUE_WEBHOOK_SCRIPT)
        self._group = ConsumerGroup(redis, INBOX_KEY, INBOX_GROUP)

    async def enqueue(self, digest: str, body: str, seen_ttl: int) -> bool:
        """Queues `body` unless a delivery with this digest was taken within `seen_ttl`."""
        sealed = self._sealer.seal(body, INBOX_KEY)
        result = await call_redis(
            self._enqueue(
                keys=[inbox_seen_key(digest), INBOX_KEY],
                args=[seen_ttl, INBOX_FIELD, sealed],
            )
        )
        return int(result) == 1

    async def ensure_group(self) -> None:
        await self._group.ensure()

    async def read(self, consumer: str, count: int, block_ms: int) -> list[InboxEntry]:
        """New deliveries for `consumer` (waiting up to `block_ms` for one)."""
        return [self._entry(e) for e in await self._group.read(consumer, count, block_ms)]

    async def claim(self, consumer: str, min_idle_ms: int, count: int) -> list[InboxEntry]:
        """Deliveries another consumer took and left unacknowledged for `min_idle_ms`."""
        return [self._entry(e) for e in await self._group.claim(consumer, min_idle_ms, count)]

    async def done(self, entry_id: str) -> None:
        """Acknowledged and deleted together (one slot, one transaction)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(INBOX_KEY, INBOX_GROUP, entry_id)
            pipe.xdel(INBOX_KEY, entry_id)
            await call_redis(pipe.execute())

    async def pending(self) -> int:
        """Deliveries taken by a consumer and not yet done (for tests and operators)."""
        return await self._group.pending()

    async def length(self) -> int:
        """Entries in the stream: queued or pending."""
        return int(await call_redis(self._redis.xlen(INBOX_KEY)))

    async def leave(self, consumer: str) -> None:
        await self._group.leave(consumer)

    def _entry(self, raw: Any) -> InboxEntry:
        entry_id, fields = raw
        sealed = fields.get(INBOX_FIELD) if isinstance(fields, dict) else None
        body = self._sealer.open(str(sealed), INBOX_KEY) if sealed is not None else None
        return InboxEntry(str(entry_id), body)


def _is_reply(exc: StoreUnavailable, prefix: str) -> bool:
    """Whether Redis refused the command with this error reply (not a lost connection)."""
    cause = exc.__cause__
    return isinstance(cause, ResponseError) and str(cause).startswith(prefix)


# -- the BFF's events out ----------------------------------------------------------------------
#
# An event is written to its change's own outbox, `bff:v1:outbox:{<tag>}` (the slot of the
# flow or link that changed), by the same script or transaction as the change: no change
# without its event, on a Redis Cluster too. A relay (app/flows/events.py) then moves it to the
# delivery stream under `{events}`, taking its id once (SET NX) in the same step, so a relay
# done twice (a crash between the move and the outbox's XDEL) queues it once. There:
# - `bff:v1:events:{events}` the Stream a consumer group `bff` delivers from; it holds only the
#   first undelivered event of each order (a link), so a link's events arrive in order;
# - `bff:v1:event:{events}:<id>` the event (body, order, created, attempts);
# - `bff:v1:eventorder:{events}:<order>` the order's undelivered event ids, oldest first;
# - `bff:v1:eventretry:{events}` ids waiting out a backoff (score: when due, ms);
# - `bff:v1:eventdead:{events}` the dead letters (a Stream, capped);
# - `bff:v1:eventseen:{events}:<id>` an id already relayed, TTL = max age + a day.

OUTBOX_PREFIX = f"{PREFIX}outbox:"
EVENTS_KEY = f"{PREFIX}events:{{events}}"
EVENTS_GROUP = "bff"
EVENT_RETRY_KEY = f"{PREFIX}eventretry:{{events}}"
EVENT_DEAD_KEY = f"{PREFIX}eventdead:{{events}}"
EVENT_SWEEP_KEY = f"{PREFIX}eventsweep:{{events}}"
EVENT_KEY_PREFIX = f"{PREFIX}event:{{events}}:"
DEAD_LETTERS_KEPT = 100_000


def outbox_key(tag: str) -> str:
    return _in_slot("outbox", tag)


def event_key(event_id: str) -> str:
    return f"{EVENT_KEY_PREFIX}{event_id}"


def event_order_key(order: str) -> str:
    return f"{PREFIX}eventorder:{{events}}:{order}"


def event_seen_key(event_id: str) -> str:
    return f"{PREFIX}eventseen:{{events}}:{event_id}"


def _event_args(event: OutboxEvent | None) -> list[str | int]:
    """An event as a script's four arguments (id, order, body, created); '' for none."""
    if event is None:
        return ["", "", "", 0]
    return [event.event_id, event.order, event.body, event.created_ms]


def _outbox_fields(event: OutboxEvent) -> dict[Any, Any]:
    return {
        "id": event.event_id,
        "order": event.order,
        "body": event.body,
        "created": str(event.created_ms),
    }


# Moves one outbox entry in: KEYS seen, event, order, stream; ARGV id, body, order, created,
# seen TTL, event TTL. The first of an order goes to the stream; the rest wait in the order's
# list until the one before them is done. 1 moved; 0 moved before.
RELAY_EVENT_SCRIPT = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[5]) then return 0 end
redis.call('HSET', KEYS[2], 'body', ARGV[2], 'order', ARGV[3], 'created', ARGV[4], 'attempts', 0)
redis.call('EXPIRE', KEYS[2], ARGV[6])
redis.call('RPUSH', KEYS[3], ARGV[1])
redis.call('EXPIRE', KEYS[3], ARGV[6])
if redis.call('LINDEX', KEYS[3], 0) == ARGV[1] then
  redis.call('XADD', KEYS[4], '*', 'id', ARGV[1], 'order', ARGV[3])
end
return 1
"""

# Drops relayed entries from an outbox, and the outbox once empty (a later change makes it again).
TRIM_OUTBOX_SCRIPT = """
redis.call('XDEL', KEYS[1], unpack(ARGV))
if redis.call('XLEN', KEYS[1]) == 0 then redis.call('DEL', KEYS[1]) end
return 1
"""

# An event is done (delivered, or dead: ARGV[4] the dead letter's reason, '' for delivered):
# KEYS stream, event, order, dead; ARGV entry, id, group, reason, attempts, dead letters kept,
# order. Its entry is acked and deleted, it leaves its order and, if it led it, the next of
# that order goes to the stream. Done twice (by a consumer presumed dead, too), the second
# finds nothing to move. An event whose record is gone (expired) still leaves its order.
FINISH_EVENT_SCRIPT = """
redis.call('XACK', KEYS[1], ARGV[3], ARGV[1])
redis.call('XDEL', KEYS[1], ARGV[1])
local body = redis.call('HGET', KEYS[2], 'body')
if body and ARGV[4] ~= '' then
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[6], '*', 'id', ARGV[2], 'body', body,
    'reason', ARGV[4], 'attempts', ARGV[5])
end
redis.call('DEL', KEYS[2])
if redis.call('LINDEX', KEYS[3], 0) ~= ARGV[2] then
  redis.call('LREM', KEYS[3], 1, ARGV[2])
  return body and 1 or 0
end
redis.call('LPOP', KEYS[3])
local next_id = redis.call('LINDEX', KEYS[3], 0)
if next_id then redis.call('XADD', KEYS[1], '*', 'id', next_id, 'order', ARGV[7]) end
return body and 1 or 0
"""

# An attempt failed: KEYS stream, event, retry; ARGV entry, id, group, due (ms), order. The
# entry is acked and deleted and the event waits in the retry set (as `<id>|<order>`) until
# due. 1 scheduled; 0 its record is gone (done by another consumer).
RETRY_EVENT_SCRIPT = """
redis.call('XACK', KEYS[1], ARGV[3], ARGV[1])
redis.call('XDEL', KEYS[1], ARGV[1])
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[2], 'attempts', 1)
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[2] .. '|' .. ARGV[5])
return 1
"""

# Events whose backoff is over go back to the stream: KEYS retry, stream; ARGV now (ms), count.
DUE_EVENTS_SCRIPT = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, member in ipairs(due) do
  redis.call('ZREM', KEYS[1], member)
  local id, order = string.match(member, '^([^|]*)|(.*)$')
  redis.call('XADD', KEYS[2], '*', 'id', id, 'order', order)
end
return #due
"""


@dataclass(frozen=True, slots=True)
class QueuedEvent:
    """One event handed to a consumer: the stream entry it came in, and the event (None when
    its record is gone: done by another consumer, or expired)."""

    entry_id: str
    event_id: str
    order: str
    body: str | None = field(default=None, repr=False)
    created_ms: int = 0
    attempts: int = 0


class EventQueue:
    """The BFF's events out between their outbox and the host backend (see above)."""

    def __init__(self, redis: RedisClient) -> None:
        self._redis = redis
        self._relay = redis.register_script(RELAY_EVENT_SCRIPT)
        self._trim = redis.register_script(TRIM_OUTBOX_SCRIPT)
        self._finish = redis.register_script(FINISH_EVENT_SCRIPT)
        self._retry = redis.register_script(RETRY_EVENT_SCRIPT)
        self._due = redis.register_script(DUE_EVENTS_SCRIPT)
        self._group = ConsumerGroup(redis, EVENTS_KEY, EVENTS_GROUP)

    # -- outbox -> stream ------------------------------------------------------------------

    async def outbox(self, tag: str, count: int) -> list[tuple[str, OutboxEvent]]:
        """The oldest `count` entries of a change's outbox: (entry id, event)."""
        raw = await call_redis(
            cast(Awaitable[list[Any]], self._redis.xrange(outbox_key(tag), count=count))
        )
        return [(str(entry_id), _outbox_event(fields)) for entry_id, fields in raw]

    async def relay(self, event: OutboxEvent, seen_ttl: int, event_ttl: int) -> bool:
        """Moves one event in (False: it was moved before)."""
        result = await call_redis(
            self._relay(
                keys=[
                    event_seen_key(event.event_id),
                    event_key(event.event_id),
                    event_order_key(event.order),
                    EVENTS_KEY,
                ],
                args=[
                    event.event_id,
                    event.body,
                    event.order,
                    event.created_ms,
                    seen_ttl,
                    event_ttl,
                ],
            )
        )
        return int(result) == 1

    async def trim_outbox(self, tag: str, entry_ids: Sequence[str]) -> None:
        if entry_ids:
            await call_redis(self._trim(keys=[outbox_key(tag)], args=list(entry_ids)))

    async def outbox_tags(self) -> list[str]:
        """The tags of every outbox that holds something (SCAN: on each primary of a cluster),
        for the sweep that relays what a process died before relaying."""
        tags = set()
        async for key in self._redis.scan_iter(
            match=f"{OUTBOX_PREFIX}*", count=1000, _type="STREAM"
        ):
            name = str(key)
            if name.startswith(OUTBOX_PREFIX + "{") and name.endswith("}"):
                tags.add(name[len(OUTBOX_PREFIX) + 1 : -1])
        return sorted(tags)

    async def take_sweep(self, holder: str, ttl_ms: int) -> bool:
        """One process sweeps at a time (the others' sweeps would find the same entries)."""
        taken = await call_redis(self._redis.set(EVENT_SWEEP_KEY, holder, px=ttl_ms, nx=True))
        return bool(taken)

    # -- the consumer group ----------------------------------------------------------------

    async def ensure_group(self) -> None:
        await self._group.ensure()

    async def read(self, consumer: str, count: int, block_ms: int) -> list[QueuedEvent]:
        return await self._load(await self._group.read(consumer, count, block_ms))

    async def claim(self, consumer: str, min_idle_ms: int, count: int) -> list[QueuedEvent]:
        """Entries a consumer took and left unacknowledged for `min_idle_ms` (it died)."""
        return await self._load(await self._group.claim(consumer, min_idle_ms, count))

    async def _load(self, entries: list[Any]) -> list[QueuedEvent]:
        """The events behind stream entries, read in one pipeline."""
        if not entries:
            return []
        heads = [(str(fields.get("id", "")), str(fields.get("order", ""))) for _, fields in entries]
        async with self._redis.pipeline(transaction=False) as pipe:
            for event_id, _ in heads:
                pipe.hgetall(event_key(event_id))
            records = await call_redis(pipe.execute())
        queued = []
        for (entry_id, _), (event_id, order), record in zip(entries, heads, records, strict=True):
            if not record:
                queued.append(QueuedEvent(str(entry_id), event_id, order))
                continue
            queued.append(
                QueuedEvent(
                    str(entry_id),
                    event_id,
                    order,
                    body=str(record["body"]),
                    created_ms=int(record["created"]),
                    attempts=int(record.get("attempts", 0)),
                )
            )
        return queued

    async def finish(self, event: QueuedEvent, *, dead_reason: str = "") -> bool:
        """Delivered, dead-lettered (with a reason) or gone: the next of its order is queued.
        False if its record was gone (done before)."""
        result = await call_redis(
            self._finish(
                keys=[
                    EVENTS_KEY,
                    event_key(event.event_id),
                    event_order_key(event.order),
                    EVENT_DEAD_KEY,
                ],
                args=[
                    event.entry_id,
                    event.event_id,
                    EVENTS_GROUP,
                    dead_reason,
                    event.attempts + 1,
                    DEAD_LETTERS_KEPT,
                    event.order,
                ],
            )
        )
        return int(result) == 1

    async def retry_at(self, event: QueuedEvent, due_ms: int) -> bool:
        result = await call_redis(
            self._retry(
                keys=[EVENTS_KEY, event_key(event.event_id), EVENT_RETRY_KEY],
                args=[event.entry_id, event.event_id, EVENTS_GROUP, due_ms, event.order],
            )
        )
        return int(result) == 1

    async def requeue_due(self, now_ms: int, count: int) -> int:
        """Moves the ids whose backoff is over back to the stream; how many."""
        return int(
            await call_redis(self._due(keys=[EVENT_RETRY_KEY, EVENTS_KEY], args=[now_ms, count]))
        )

    async def counts(self) -> tuple[int, int, int]:
        """(in the stream, waiting out a backoff, dead letters): for /metrics and tests."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xlen(EVENTS_KEY)
            pipe.zcard(EVENT_RETRY_KEY)
            pipe.xlen(EVENT_DEAD_KEY)
            queued, waiting, dead = await call_redis(pipe.execute())
        return int(queued), int(waiting), int(dead)

    async def dead_letters(self, count: int = 100) -> list[dict[str, str]]:
        raw = await call_redis(
            cast(Awaitable[list[Any]], self._redis.xrange(EVENT_DEAD_KEY, count=count))
        )
        return [{str(k): str(v) for k, v in fields.items()} for _, fields in raw]

    async def leave(self, consumer: str) -> None:
        await self._group.leave(consumer)


def _outbox_event(fields: dict[Any, Any]) -> OutboxEvent:
    return OutboxEvent(
        event_id=str(fields["id"]),
        order=str(fields["order"]),
        body=str(fields["body"]),
        created_ms=int(fields["created"]),
    )
