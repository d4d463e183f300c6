"""Two stand-ins for the BFF: bare ASGI apps on the same server (uvicorn) and Redis client
(redis-py), making the BFF's upstream calls and Redis operations per route, with none of its
validation, security, logging or metrics. They differ only in their HTTP client:

- `--app baseline`: httpx over the BFF's transport (BFF_HTTP_TRANSPORT: aiohttp's pool by
  default, or httpcore), with the BFF's limits. The floor of the BFF's own stack: the BFF
  cannot cost less than it without changing the stack.
- `--app floor`: the load generator's own lean client (bench/client.py), the cheapest client
  measured (bench/README.md). The floor of the work itself: what the same calls and Redis
  operations cost with an HTTP client that does almost nothing.

Per route, the BFF's round trips to Redis with the same shape (one command, one script call or
one pipeline each; pinned for the BFF by tests/store/test_round_trips.py), and its Flinks calls:
- POST /v1/authorize-tokens      session; 2 rate counters (pipeline); mint
- GET  /v1/oauth/start           rate counter; flow + state (script); mint;
                                 GET /v3/oauth/authorize; new session -> 303 + cookie
- GET  /v1/oauth/callback        session; state consumed + flow (script); loginId claim
                                 (script); flow claimed + lease (script); mint; POST /Authorize;
                                 link filed + owner index (pipeline: script, SADD, EXPIRE);
                                 outcome (script); reported (script); session rotated
                                 (pipeline: GETDEL, SET) -> 303 + cookie
- POST /v1/connect/sessions      rate counter; SET flow NX; mint; new session -> 201 + cookie
- POST /v1/connect/sessions/{id}/complete
                                 session; GET flow; then as the callback from the loginId claim
- GET  /v1/flows/{id}            session; GET flow
- GET  /readyz                   PING

Run: `python -m bench.baseline --port N --app baseline|floor` with the BFF's environment variables
(REDIS_URL, FLINKS_API_URL, FLINKS_CONNECT_URL, FLINKS_CUSTOMER_ID, FLINKS_SECRET_KEY,
BFF_PUBLIC_URL).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit

import aiohttp
import httpx
import uvicorn
from httpx_aiohttp import AiohttpTransport
from redis.asyncio import BlockingConnectionPool, Redis

from bench.client import Pool

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PREFIX = "bench:v1:"
FLOW_TTL, STATE_TTL, LOGIN_TTL = 1800, 600, 86400
COOKIE = "flinks_bff_session"
# A copy of the BFF's compare-and-set of a flow record (app/store.py), so that Redis does the
# same work; copied rather than imported, so that the BFF's refactors leave the bench alone.
CAS_FLOW = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
if cjson.decode(current)['version'] ~= tonumber(ARGV[1]) then return -1 end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
if ARGV[3] ~= '' then redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[4]) end
return 1
"""
# Copies of the BFF's rate counter (app/ratelimit.py) and of its scripts' shapes (app/store.py),
# so that each round trip carries the same kind of work.
HIT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {count, ttl}
"""
CREATE_FLOW = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 0 end
if ARGV[3] ~= '' then redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[4]) end
return 1
"""
CONSUME_STATE = """
local stored = redis.call('GET', KEYS[1])
if not stored or stored ~= ARGV[1] then return false end
redis.call('DEL', KEYS[1])
return redis.call('GET', KEYS[2])
"""
WRITE_LINK = """
local current = redis.call('GET', KEYS[1])
if current and cjson.decode(current)['owner'] ~= ARGV[1] then return -1 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
if ARGV[4] ~= '' then
  redis.call('XADD', KEYS[2], '*', 'id', ARGV[4], 'body', ARGV[5])
  redis.call('DEL', KEYS[3])
  redis.call('SET', KEYS[4], ARGV[6], 'EX', ARGV[3])
end
return 1
"""
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
# The BFF's client limits (app/main.py, app/pools.py): BFF_MAX_INFLIGHT 1024 + 16 connections,
# 30 s to read, 3 s to connect.
MAX_CONNECTIONS = 1040
READ_TIMEOUT_S, CONNECT_TIMEOUT_S = 30.0, 3.0


class Upstream(Protocol):
    """The two kinds of Flinks call the BFF makes: a JSON POST and a GET answered by a redirect."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def post(self, url: str, headers: dict[str, str], body: object) -> tuple[int, Any]: ...
    async def location(self, url: str, headers: dict[str, str], params: dict[str, str]) -> str: ...


class HttpxUpstream:
    """httpx as the BFF builds it (app/outbound/transport.py), built here: the bench imports
    no BFF code."""

    def __init__(self, transport: str | None = None) -> None:
        self.transport = transport or os.environ.get("BFF_HTTP_TRANSPORT", "aiohttp")

    async def start(self) -> None:
        limits = httpx.Limits(
            max_connections=MAX_CONNECTIONS,
            max_keepalive_connections=MAX_CONNECTIONS,
            keepalive_expiry=30,
        )
        transport: httpx.AsyncBaseTransport
        if self.transport == "aiohttp":
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS, keepalive_timeout=30),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
            transport = AiohttpTransport(limits=limits, client=session)
        else:
            transport = httpx.AsyncHTTPTransport(limits=limits)
        self.client = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S, pool=2.0),
            follow_redirects=False,
        )

    async def close(self) -> None:
        await self.client.aclose()

    async def post(self, url: str, headers: dict[str, str], body: object) -> tuple[int, Any]:
        response = await self.client.post(url, headers=headers, json=body)
        return response.status_code, response.json()

    async def location(self, url: str, headers: dict[str, str], params: dict[str, str]) -> str:
        response = await self.client.get(url, headers=headers, params=params)
        return response.headers["location"]


class LeanUpstream:
    """The load generator's own HTTP/1.1 client (bench/client.py): keep-alive, nothing else."""

    async def start(self) -> None:
        self.pools: dict[str, Pool] = {}

    async def close(self) -> None:
        for pool in self.pools.values():
            pool.close()

    def _pool(self, url: str) -> tuple[Pool, str]:
        parts = urlsplit(url)
        pool = self.pools.get(parts.netloc)
        if pool is None:
            pool = self.pools[parts.netloc] = Pool(parts.hostname or "", parts.port or 80)
        return pool, parts.path + (f"?{parts.query}" if parts.query else "")

    async def post(self, url: str, headers: dict[str, str], body: object) -> tuple[int, Any]:
        pool, target = self._pool(url)
        data = b"" if body is None else json.dumps(body).encode()
        response = await pool.request("POST", target, headers=headers.items(), body=data)
        return response.status, response.json()

    async def location(self, url: str, headers: dict[str, str], params: dict[str, str]) -> str:
        pool, target = self._pool(f"{url}?{urlencode(params)}")
        response = await pool.request("GET", target, headers=headers.items())
        return response.headers["location"]


class AiohttpUpstream:
    """aiohttp on its own (no httpx): measured by bench/transports.py, not an app here."""

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS, keepalive_timeout=30),
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def close(self) -> None:
        await self.session.close()

    async def post(self, url: str, headers: dict[str, str], body: object) -> tuple[int, Any]:
        async with self.session.post(url, headers=headers, json=body) as response:
            return response.status, json.loads(await response.read())

    async def location(self, url: str, headers: dict[str, str], params: dict[str, str]) -> str:
        async with self.session.get(
            url, headers=headers, params=params, allow_redirects=False
        ) as response:
            return response.headers["location"]


UPSTREAMS: dict[str, type[Upstream]] = {
    "baseline": HttpxUpstream,
    "floor": LeanUpstream,
}


class Baseline:
    def __init__(self, upstream: Upstream) -> None:
        env = os.environ
        api = env["FLINKS_API_URL"].rstrip("/")
        self.banking = f"{api}/v3/{env['FLINKS_CUSTOMER_ID']}/BankingServices"
        self.oauth_url = f"{api}/v3/oauth/authorize"
        self.connect_url = env["FLINKS_CONNECT_URL"]
        self.secret = env["FLINKS_SECRET_KEY"]
        self.redirect_uri = env.get("BFF_PUBLIC_URL", "http://127.0.0.1:8000") + (
            "/v1/oauth/callback"
        )
        self.redis_url = env["REDIS_URL"]
        self.http = upstream
        self.redis: Redis | None = None

    # -- ASGI --------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        body = await _read_body(receive) if method == "POST" else b""
        reply: Reply
        if path == "/v1/authorize-tokens":
            reply = await self.mint_for_page(scope)
        elif path == "/v1/oauth/start":
            reply = await self.oauth_start(scope)
        elif path == "/v1/oauth/callback":
            reply = await self.oauth_callback(scope)
        elif path == "/v1/connect/sessions":
            reply = await self.connect_session()
        elif path.startswith("/v1/connect/sessions/"):
            login_id = json.loads(body)["login_id"]
            reply = await self.connect_complete(scope, path.split("/")[4], login_id)
        elif path.startswith("/v1/flows/"):
            reply = await self.flow_status(scope, path.split("/")[3])
        elif path == "/readyz":
            reply = await self.ready()
        else:
            reply = _json(404, {"code": "not_found"})
        await _send(send, reply)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.open()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def open(self) -> None:
        await self.http.start()
        # The BFF's kind of pool (app/store.py): callers wait for a free connection.
        pool = BlockingConnectionPool.from_url(
            self.redis_url, decode_responses=True, max_connections=64, timeout=5.0
        )
        self.redis = Redis(connection_pool=pool)
        self.cas = self.redis.register_script(CAS_FLOW)
        self.hit_script = self.redis.register_script(HIT)
        self.create_script = self.redis.register_script(CREATE_FLOW)
        self.consume_script = self.redis.register_script(CONSUME_STATE)
        self.link_script = self.redis.register_script(WRITE_LINK)

    async def close(self) -> None:
        await self.http.close()
        if self.redis is not None:
            await self.redis.aclose()

    async def ready(self) -> Reply:
        await self._redis.ping()
        return _json(200, {"status": "ready"})

    @property
    def _redis(self) -> Redis:
        assert self.redis is not None
        return self.redis

    # -- the same upstream calls and Redis operations as the BFF -------------------------------

    async def mint(self) -> str:
        _, body = await self.http.post(
            f"{self.banking}/GenerateAuthorizeToken",
            {"flinks-auth-key": self.secret, **JSON_HEADERS},
            None,
        )
        token: str = body["Token"]
        return token

    async def authorize(self, login_id: str) -> str:
        token = await self.mint()
        status, _ = await self.http.post(
            f"{self.banking}/Authorize",
            {"flinks-auth-key": token, **JSON_HEADERS},
            {"LoginId": login_id, "MostRecentCached": False, "Save": True, "Language": "en"},
        )
        return "connected" if status == 200 else "failed"

    async def session(self, scope: Scope) -> str | None:
        """The owner behind the request's session cookie (a GET), or None without a cookie."""
        cookie = _cookie(scope)
        if cookie is None:
            return None
        owner = await self._redis.get(f"{PREFIX}session:{{{cookie}}}")
        return None if owner is None else str(owner)

    async def new_session(self, owner: str) -> str:
        session_id = secrets.token_urlsafe(32)
        await self._redis.set(f"{PREFIX}session:{{{session_id}}}", owner, ex=LOGIN_TTL)
        return _cookie_header(session_id)

    async def rotate(self, scope: Scope, owner: str) -> str:
        """The session id moved to a new one (one pipeline), as a connected flow does."""
        session_id = secrets.token_urlsafe(32)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.getdel(f"{PREFIX}session:{{{_cookie(scope)}}}")
            pipe.set(f"{PREFIX}session:{{{session_id}}}", owner, ex=LOGIN_TTL)
            await pipe.execute()
        return _cookie_header(session_id)

    async def hit(self, *identities: str) -> None:
        """Rate counters: one script call, or several in one pipeline."""
        keys = [f"{PREFIX}rate:{who}" for who in identities]
        if len(keys) == 1:
            await self.hit_script(keys=keys, args=[30])
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.evalsha(self.hit_script.sha, 1, key, 30)
            await pipe.execute()

    async def get_flow(self, flow_id: str) -> dict[str, Any]:
        raw = await self._redis.get(f"{PREFIX}flow:{{{flow_id}}}")
        assert isinstance(raw, str)
        flow: dict[str, Any] = json.loads(raw)
        return flow

    async def replace(self, flow: dict[str, Any], login_id: str = "") -> None:
        flow_id = flow["flow_id"]
        version = flow["version"]
        flow["version"] = version + 1
        await self.cas(
            keys=[f"{PREFIX}flow:{{{flow_id}}}", f"{PREFIX}login:{{{flow_id}}}"],
            args=[version, json.dumps(flow), login_id, LOGIN_TTL],
        )

    def _link_call(
        self, link_id: str, link: dict[str, Any], event: str = ""
    ) -> tuple[list[str], list[Any]]:
        """WRITE_LINK's keys and arguments: the claim (no event) or the filing (its event)."""
        keys = [f"{PREFIX}{name}:{{{link_id}}}" for name in ("link", "outbox", "data", "job")]
        record = json.dumps(link)
        return keys, [link["owner"], record, LOGIN_TTL, event, event and record, event]

    async def finish(self, scope: Scope, flow: dict[str, Any], login_id: str) -> str:
        """From the loginId claim to the rotated session: the Set-Cookie header."""
        owner = flow["owner"]
        link_id = secrets.token_urlsafe(16)
        link = {"link_id": link_id, "owner": owner, "status": "linking", "flow_id": flow["flow_id"]}
        keys, args = self._link_call(link_id, link)
        await self.link_script(keys=keys, args=args)  # the claim
        flow["status"] = "authorizing"
        await self.replace(flow, login_id)
        flow["status"] = await self.authorize(login_id)
        link["status"] = "active"
        keys, args = self._link_call(link_id, link, secrets.token_urlsafe(16))
        index = f"{PREFIX}owner:{{{owner}}}"
        async with self._redis.pipeline(transaction=False) as pipe:  # filed, with the index
            pipe.evalsha(self.link_script.sha, len(keys), *keys, *args)
            pipe.sadd(index, link_id)
            pipe.expire(index, LOGIN_TTL)
            await pipe.execute()
        await self.replace(flow)  # the outcome
        flow["reported"] = True
        await self.replace(flow)
        return await self.rotate(scope, owner)

    async def oauth_start(self, scope: Scope) -> Reply:
        await self.hit("start:127.0.0.1")
        owner = secrets.token_urlsafe(16)
        flow = _new_flow("oauth", owner)
        state = secrets.token_urlsafe(32)
        flow_key = f"{PREFIX}flow:{{{flow['flow_id']}}}"
        await self.create_script(
            keys=[flow_key, f"{PREFIX}state:{{{flow['flow_id']}}}{state}"],
            args=[json.dumps(flow), FLOW_TTL, owner, STATE_TTL],
        )
        token = await self.mint()
        found = await self.http.location(
            self.oauth_url,
            {"flinks-auth-key": token},
            {
                "institution_id": "FlinksCapital",
                "redirect_uri": self.redirect_uri,
                "state": f"{flow['flow_id']}.{state}",
                "lang": "en",
            },
        )
        location = urljoin(self.oauth_url, found)
        return _redirect(location, await self.new_session(owner))

    async def oauth_callback(self, scope: Scope) -> Reply:
        query = dict(parse_qsl(scope["query_string"].decode()))
        owner = await self.session(scope)
        flow_id, _, state = query["state"].partition(".")
        raw = await self.consume_script(
            keys=[f"{PREFIX}state:{{{flow_id}}}{state}", f"{PREFIX}flow:{{{flow_id}}}"],
            args=[owner or ""],
        )
        flow = json.loads(raw)
        cookie = await self.finish(scope, flow, query["loginId"])
        target = "http://127.0.0.1:8000/?" + urlencode(
            {"flow_id": flow["flow_id"], "status": flow["status"]}
        )
        return _redirect(target, cookie)

    async def connect_session(self) -> Reply:
        await self.hit("start:127.0.0.1")
        token = await self.mint()
        owner = secrets.token_urlsafe(16)
        flow = _new_flow("connect", owner)
        flow_key = f"{PREFIX}flow:{{{flow['flow_id']}}}"
        await self._redis.set(flow_key, json.dumps(flow), ex=FLOW_TTL, nx=True)
        iframe = self.connect_url + "?" + urlencode({"authorizeToken": token, "demo": "true"})
        return _json(
            201,
            {"flow_id": flow["flow_id"], "iframe_url": iframe, "expires_at": flow["expires_at"]},
            await self.new_session(owner),
        )

    async def connect_complete(self, scope: Scope, flow_id: str, login_id: str) -> Reply:
        await self.session(scope)
        flow = await self.get_flow(flow_id)
        cookie = await self.finish(scope, flow, login_id)
        return _json(200, flow, cookie)

    async def flow_status(self, scope: Scope, flow_id: str) -> Reply:
        await self.session(scope)
        return _json(200, await self.get_flow(flow_id))

    async def mint_for_page(self, scope: Scope) -> Reply:
        owner = await self.session(scope)
        await self.hit("mint:127.0.0.1", f"mint:{owner}")
        token = await self.mint()
        return _json(201, {"authorize_token": token, "expires_at": _expires(1800)})


def _cookie(scope: Scope) -> str | None:
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    for name, value in headers:
        if name == b"cookie":
            for part in value.decode().split(";"):
                key, _, found = part.strip().partition("=")
                if key == COOKIE:
                    return found
    return None


def _cookie_header(session_id: str) -> str:
    return f"{COOKIE}={session_id}; HttpOnly; Path=/; SameSite=lax"


def _expires(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + seconds))


def _new_flow(kind: str, owner: str) -> dict[str, Any]:
    return {
        "flow_id": secrets.token_urlsafe(16),
        "kind": kind,
        "owner": owner,
        "status": "started",
        "version": 0,
        "return_url": "http://127.0.0.1:8000/",
        "created_at": _expires(0),
        "expires_at": _expires(FLOW_TTL),
    }


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


async def _send(send: Send, reply: Reply) -> None:
    headers = [*reply.headers, (b"content-length", str(len(reply.body)).encode())]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})


def _json(status: int, value: object, cookie: str | None = None) -> Reply:
    headers = [(b"content-type", b"application/json")]
    if cookie:
        headers.append((b"set-cookie", cookie.encode()))
    return Reply(status, headers, json.dumps(value).encode())


def _redirect(location: str, cookie: str | None = None) -> Reply:
    headers = [(b"location", location.encode())]
    if cookie:
        headers.append((b"set-cookie", cookie.encode()))
    return Reply(303, headers, b"")


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.baseline", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--app", choices=[*sorted(UPSTREAMS), "fastapi"], default="baseline")
    args = parser.parse_args()
    app: Any = Baseline(HttpxUpstream() if args.app == "fastapi" else UPSTREAMS[args.app]())
    if args.app == "fastapi":
        from bench.framework import fastapi_app  # it imports this module

        app = fastapi_app(app)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        access_log=False,
        log_level="warning",
        server_header=False,
    )


if __name__ == "__main__":
    main()
