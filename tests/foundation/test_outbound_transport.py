"""The outbound client's contract, on both transports (app/outbound/transport.py), against real
sockets a script answers: what fails as "not sent" (the Flinks client may send it again) and what
fails as "may have been sent" (it must not), timeouts, the pool's bound, verified TLS with the
name kept in SNI, no redirects followed, no cookies kept, and a POST never sent twice."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx
import pytest
import trustme

from app.outbound import Transport, outbound_client
from app.outbound.transport import mapped

TRANSPORTS: tuple[Transport, ...] = ("aiohttp", "httpcore")
# What the Flinks client reads as "nothing was written" (app/flinks/client.py _NOT_SENT).
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
TIMEOUT = httpx.Timeout(5.0, connect=2.0, pool=1.0)
OK = b'{"ok":true}'

Reply = Callable[["Exchange"], Awaitable[bool]]  # True: keep the connection for another request


@dataclass
class Exchange:
    head: bytes
    body: bytes
    writer: asyncio.StreamWriter
    number: int  # the request's number on its connection, from 1
    release: asyncio.Event  # set when the test lets held answers go (and at the end)


@dataclass
class Script:
    """A server that answers each request as `reply` says and records every request it read."""

    reply: Reply
    requests: list[Exchange] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = 0
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                number += 1
                body = await reader.readexactly(length)
                exchange = Exchange(head, body, writer, number, self.release)
                self.requests.append(exchange)
                if not await self.reply(exchange):
                    return
        except asyncio.CancelledError:
            return  # the loop closing: Python 3.11's stream server logs a cancelled handler
        finally:
            writer.close()


def answer(status: int = 200, body: bytes = OK, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s" % (
        status,
        len(body),
        extra,
        body,
    )


async def ok(exchange: Exchange) -> bool:
    exchange.writer.write(answer(extra=b"Set-Cookie: session=abc; Path=/\r\n"))
    await exchange.writer.drain()
    return True


@asynccontextmanager
async def serving(
    reply: Reply, tls: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[Script, str]]:
    script = Script(reply)
    server = await asyncio.start_server(script.serve, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    try:
        yield script, f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        script.release.set()
        server.close()


@asynccontextmanager
async def client(
    transport: Transport, *, max_connections: int = 8, verify: ssl.SSLContext | bool = True
) -> AsyncIterator[httpx.AsyncClient]:
    http = outbound_client(
        max_connections=max_connections, timeout=TIMEOUT, transport=transport, verify=verify
    )
    async with http:
        yield http


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> Transport:
    chosen: Transport = request.param
    return chosen


async def test_a_call_sends_the_body_and_headers_and_reads_the_answer(transport: Transport) -> None:
    async with serving(ok) as (script, url), client(transport) as http:
        response = await http.post(
            f"{url}/v3/x/Authorize", json={"LoginId": "L"}, headers={"flinks-auth-key": "k"}
        )
        assert (response.status_code, response.json()) == (200, {"ok": True})
    (exchange,) = script.requests
    assert exchange.head.startswith(b"POST /v3/x/Authorize HTTP/1.1\r\n")
    assert b"\r\nflinks-auth-key: k\r\n" in exchange.head.lower()
    assert exchange.body == b'{"LoginId":"L"}'


async def test_no_cookie_set_by_one_answer_rides_on_the_next_call(transport: Transport) -> None:
    async with serving(ok) as (script, url), client(transport) as http:
        first = await http.get(f"{url}/a")
        assert first.headers["set-cookie"] == "session=abc; Path=/"
        await http.get(f"{url}/b")
        assert list(http.cookies.jar) == []
    assert [b"cookie:" in exchange.head.lower() for exchange in script.requests] == [False, False]


async def test_a_redirect_is_answered_not_followed(transport: Transport) -> None:
    async def redirect(exchange: Exchange) -> bool:
        exchange.writer.write(answer(302, b"", b"Location: http://127.0.0.1:9/elsewhere\r\n"))
        return True

    async with serving(redirect) as (script, url), client(transport) as http:
        response = await http.post(f"{url}/OAuth/Authorize", json={})
    assert response.status_code == 302
    assert response.headers["location"] == "http://127.0.0.1:9/elsewhere"
    assert len(script.requests) == 1


async def test_nobody_listening_is_not_sent(transport: Transport) -> None:
    async with serving(ok) as (_, url):
        pass  # closed: the port refuses
    async with client(transport) as http:
        with pytest.raises(NOT_SENT):
            await http.post(f"{url}/Authorize", json={})


async def test_a_connection_closed_after_the_request_may_have_been_sent(
    transport: Transport,
) -> None:
    """aiohttp says ServerDisconnectedError, which httpx-aiohttp alone turns into
    ConnectTimeout ("not sent"): the Flinks client would send a live /Authorize again."""

    async def hang_up(exchange: Exchange) -> bool:
        return False

    async with serving(hang_up) as (script, url), client(transport) as http:
        with pytest.raises(httpx.TransportError) as raised:
            await http.post(f"{url}/Authorize", json={"LoginId": "L"})
    assert not isinstance(raised.value, NOT_SENT)
    assert len(script.requests) == 1


async def test_a_post_on_a_kept_connection_the_server_dropped_is_not_sent_again(
    transport: Transport,
) -> None:
    """aiohttp sends an idempotent request again when a reused connection turns out closed;
    a POST (every Flinks call that changes anything) is never sent twice."""

    async def answer_once(exchange: Exchange) -> bool:
        if exchange.number == 1:
            exchange.writer.write(answer())
            return True
        return False  # the second request on the connection: read, then hang up

    async with serving(answer_once) as (script, url), client(transport) as http:
        assert (await http.post(f"{url}/GenerateAuthorizeToken", json={})).status_code == 200
        with pytest.raises(httpx.TransportError) as raised:
            await http.post(f"{url}/Authorize", json={"LoginId": "L"})
    assert not isinstance(raised.value, NOT_SENT)
    assert [exchange.head.split(b" ")[1] for exchange in script.requests] == [
        b"/GenerateAuthorizeToken",
        b"/Authorize",
    ]


async def test_a_body_cut_short_is_a_failure_that_may_have_been_sent(transport: Transport) -> None:
    async def cut(exchange: Exchange) -> bool:
        exchange.writer.write(answer(body=b"x" * 100)[:-90])
        await exchange.writer.drain()
        return False

    async with (
        serving(cut) as (_, url),
        client(transport) as http,
        http.stream("POST", f"{url}/Authorize", json={}) as response,
    ):
        assert response.status_code == 200
        with pytest.raises(httpx.TransportError) as raised:
            await response.aread()
    assert not isinstance(raised.value, NOT_SENT)


async def test_an_answer_that_is_not_http_is_a_transport_error(transport: Transport) -> None:
    async def garbage(exchange: Exchange) -> bool:
        exchange.writer.write(b"SMTP ready\r\n\r\n")
        await exchange.writer.drain()
        return False

    async with serving(garbage) as (_, url), client(transport) as http:
        with pytest.raises(httpx.TransportError) as raised:
            await http.post(f"{url}/Authorize", json={})
    assert not isinstance(raised.value, NOT_SENT)


async def test_a_silent_server_is_a_read_timeout(transport: Transport) -> None:
    async def silent(exchange: Exchange) -> bool:
        await exchange.release.wait()
        return False

    async with serving(silent) as (script, url), client(transport) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post(f"{url}/Authorize", json={}, timeout=httpx.Timeout(0.3, pool=1.0))
    assert len(script.requests) == 1


async def test_a_full_pool_is_a_wait_then_not_sent(transport: Transport) -> None:
    """One connection, held by a call the server has not answered: the next call waits for
    the pool's time and fails as never sent, and the server never sees it."""
    held = asyncio.Event()

    async def hold(exchange: Exchange) -> bool:
        held.set()
        await exchange.release.wait()
        exchange.writer.write(answer())
        return True

    async with serving(hold) as (script, url), client(transport, max_connections=1) as http:
        first = asyncio.create_task(http.post(f"{url}/first", json={}))
        await held.wait()
        with pytest.raises(NOT_SENT):
            await http.post(
                f"{url}/second", json={}, timeout=httpx.Timeout(5.0, connect=0.2, pool=0.2)
            )
        script.release.set()
        assert (await first).status_code == 200
    assert [exchange.head.split(b" ")[1] for exchange in script.requests] == [b"/first"]


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_tls(authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("flinks.test").configure_cert(context)
    return context


@pytest.fixture(scope="module")
def trusting(authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    authority.configure_trust(context)
    return context


async def test_tls_is_verified_against_the_system_authorities(
    transport: Transport, server_tls: ssl.SSLContext
) -> None:
    async with serving(ok, server_tls) as (script, url), client(transport) as http:
        with pytest.raises(httpx.ConnectError):
            await http.post(f"{url}/Authorize", json={}, extensions={"sni_hostname": "flinks.test"})
    assert script.requests == []


async def test_tls_checks_the_name_in_sni_when_the_address_is_pinned(
    transport: Transport, server_tls: ssl.SSLContext, trusting: ssl.SSLContext
) -> None:
    """The webhook sender connects to the address it checked and keeps the name in SNI."""
    async with serving(ok, server_tls) as (script, url):
        async with client(transport, verify=trusting) as http:
            pinned = await http.post(
                f"{url}/hook",
                json={},
                headers={"Host": "flinks.test"},
                extensions={"sni_hostname": "flinks.test"},
            )
            assert pinned.status_code == 200
        # A new client: a pooled connection would not shake hands again.
        async with client(transport, verify=trusting) as http:
            with pytest.raises(httpx.ConnectError):  # the certificate does not name 127.0.0.1
                await http.post(f"{url}/hook", json={})
    assert len(script.requests) == 1


@pytest.mark.parametrize("name", ["HTTPS_PROXY", "http_proxy", "ALL_PROXY"])
async def test_a_proxy_in_the_environment_is_ignored_and_said(
    transport: Transport,
    name: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Calls go straight to where they are sent: a proxy variable meant for other programs
    does not reroute them (the proxy here would refuse: nothing listens on port 9)."""
    monkeypatch.setenv(name, "http://127.0.0.1:9")
    caplog.set_level(logging.WARNING, logger="app.outbound")
    async with serving(ok) as (script, url), client(transport) as http:
        assert (await http.post(f"{url}/Authorize", json={})).status_code == 200
    assert len(script.requests) == 1
    (record,) = [r for r in caplog.records if r.name == "app.outbound"]
    assert record.getMessage() == "outbound.environment_ignored"
    assert record.__dict__["variables"] == [name.upper()]


async def test_the_authorities_of_ssl_cert_file_are_the_ones_trusted(
    transport: Transport,
    server_tls: ssl.SSLContext,
    authority: trustme.CA,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """An operator's CA bundle (SSL_CERT_FILE) replaces certifi's, as for httpx's own."""
    bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    async with serving(ok, server_tls) as (script, url), client(transport) as http:
        answer_ = await http.post(
            f"{url}/Authorize", json={}, extensions={"sni_hostname": "flinks.test"}
        )
        assert answer_.status_code == 200
    assert len(script.requests) == 1


def test_an_httpx_error_that_is_not_a_translation_passes_unchanged() -> None:
    own = httpx.ReadTimeout("httpx's own")
    assert mapped(own) is own


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (aiohttp.ServerDisconnectedError(), httpx.RemoteProtocolError),
        (aiohttp.ClientPayloadError("cut"), httpx.RemoteProtocolError),
        (aiohttp.ConnectionTimeoutError(), httpx.ConnectTimeout),
        (aiohttp.SocketTimeoutError(), httpx.ReadTimeout),
    ],
)
def test_aiohttp_failures_map_by_what_they_say_of_the_request(
    raised: aiohttp.ClientError, expected: type[httpx.TransportError]
) -> None:
    """Straight from aiohttp, or through httpx-aiohttp's own translation (its ConnectTimeout
    for a server that hung up is the case that matters): the same answer."""
    assert type(mapped(raised)) is expected
    translated = httpx.ConnectTimeout("httpx-aiohttp's guess")
    translated.__cause__ = raised
    assert type(mapped(translated)) is expected
