"""What a client may send, on a real uvicorn server: body size, header count and size, and how
slowly (slowloris). The slow and oversized requests go over raw sockets."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
from redis.asyncio import Redis

from app.main import create_app
from app.settings import Settings
from tests.integration.conftest import Sandbox, bff_settings
from tests.integration.edge_servers import (
    RawResponse,
    closed_by_server,
    connect,
    edge_bff,
    head,
    read_response,
    read_until_closed,
)
from tests.integration.servers import bff_processes
from tests.waiting import scaled

TIMEOUT = 1.0  # BFF_REQUEST_TIMEOUT in these tests
HEADER_BYTES = 8192
BODY_CAP = 64 * 1024  # the default
JSON_POST = ("POST", "/v1/connect/sessions", "Content-Type: application/json")


@pytest.fixture
def settings(redis_url: str, redis: Redis, sandbox: Sandbox) -> Settings:
    return bff_settings(
        redis_url,
        sandbox,
        BFF_REQUEST_TIMEOUT=TIMEOUT,
        BFF_MAX_HEADER_BYTES=HEADER_BYTES,
        BFF_MAX_HEADERS=50,
    )


@pytest.fixture
def url(settings: Settings) -> Iterator[str]:
    with edge_bff(create_app(settings), settings) as base_url:
        yield base_url


def _problem(response: RawResponse, status: int, code: str) -> None:
    assert response.status == status, response.body
    assert response.headers["content-type"] == "application/problem+json"
    body = json.loads(response.body)
    assert body["code"] == code
    assert body["status"] == status
    assert body["request_id"] == response.headers["x-request-id"]


# -- body ----------------------------------------------------------------------------------


def test_a_declared_body_over_the_cap_is_refused_before_it_is_read(url: str) -> None:
    with connect(url) as sock:
        sock.sendall(head(*JSON_POST, f"Content-Length: {100 * 1024 * 1024}", ""))
        # Not a byte of the 100 MiB is sent: the answer comes anyway, and the connection ends.
        response = read_response(sock, "POST")
        _problem(response, 413, "payload_too_large")
        assert response.headers["connection"] == "close"
        assert closed_by_server(sock)


def test_a_chunked_body_is_counted_as_it_streams_and_cut_at_the_cap(url: str) -> None:
    chunk = b"x" * 8192
    with connect(url) as sock:
        sock.sendall(head(*JSON_POST, "Transfer-Encoding: chunked", ""))
        for _ in range(BODY_CAP // len(chunk) + 1):  # one chunk past the cap, never the end
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        _problem(read_response(sock, "POST"), 413, "payload_too_large")
        assert closed_by_server(sock)


def test_bodies_up_to_the_cap_are_read(url: str) -> None:
    padding = "x" * (BODY_CAP - 100)
    with httpx.Client(base_url=url, timeout=scaled(30)) as client:
        under = client.post("/v1/connect/sessions", json={"tag": padding})
        assert under.status_code == 422  # read and validated (the tag is too long)
        over = client.post("/v1/connect/sessions", json={"tag": padding + "x" * 200})
        assert over.status_code == 413
        assert over.json()["code"] == "payload_too_large"
        assert client.post("/v1/connect/sessions", json={}).status_code == 201


# -- headers -------------------------------------------------------------------------------


def test_two_thousand_headers_are_refused(url: str) -> None:
    many = [f"X-H{i}: v" for i in range(2000)]
    with connect(url) as sock:
        sock.sendall(head("GET", "/livez", *many, ""))
        _problem(read_response(sock), 431, "headers_too_large")
        assert closed_by_server(sock)


def test_a_header_too_large_is_refused_before_it_is_all_received(url: str) -> None:
    with connect(url) as sock:
        # Twice the limit, and the header line never ends: refused on what arrived.
        sock.sendall(head("GET", "/livez") + b"Cookie: " + b"a" * (2 * HEADER_BYTES))
        _problem(read_response(sock), 431, "headers_too_large")
        assert closed_by_server(sock)


def test_headers_within_the_limits_are_served(url: str) -> None:
    headers = {f"X-H{i}": "v" for i in range(40)} | {"Cookie": "a" * (HEADER_BYTES // 2)}
    with httpx.Client(base_url=url, timeout=scaled(30)) as client:
        assert client.get("/livez", headers=headers).status_code == 200
        too_many = client.get("/livez", headers={f"X-H{i}": "v" for i in range(60)})
        assert too_many.status_code == 431
        too_big = client.get("/livez", headers={"Cookie": "a" * (HEADER_BYTES + 1)})
        assert too_big.status_code == 431
        assert too_big.json()["code"] == "headers_too_large"


# -- slow clients --------------------------------------------------------------------------


def test_a_half_sent_request_head_is_answered_408_and_closed(url: str) -> None:
    with connect(url) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        _problem(read_response(sock), 408, "request_timeout")
        assert closed_by_server(sock)
        # A timer, so it cannot fire early; the upper bound is the socket's (scaled) timeout.
        assert time.monotonic() - started >= TIMEOUT * 0.9


def test_a_connection_that_sends_nothing_is_closed(url: str) -> None:
    with connect(url) as sock:
        _problem(read_response(sock), 408, "request_timeout")
        assert closed_by_server(sock)


def test_a_body_sent_too_slowly_is_cut(url: str, sandbox: Sandbox) -> None:
    with connect(url) as sock:
        sock.sendall(head(*JSON_POST, "Content-Length: 10", "") + b"{}   ")
        # Closed without a word: the app was reading the body, and saw the client go.
        assert read_until_closed(sock) == b""
    with httpx.Client(base_url=url, timeout=scaled(30)) as client:
        assert client.get("/readyz").status_code == 200


async def test_many_half_sent_requests_are_all_closed(url: str) -> None:
    sockets = [connect(url) for _ in range(50)]
    try:
        for i, sock in enumerate(sockets):
            sock.sendall(head("POST", "/v1/authorize-tokens", f"X-Slow: {i}")[:-2])
        assert all(closed_by_server(sock) for sock in sockets)
    finally:
        for sock in sockets:
            sock.close()


async def test_a_slow_answer_is_not_cut_by_the_request_timeout(url: str, sandbox: Sandbox) -> None:
    # The request arrives at once; Flinks then takes longer than the request timeout.
    faults = {"latency_ms": TIMEOUT * 1500, "endpoints": ["GenerateAuthorizeToken"]}
    assert (await sandbox.http.put("/__sandbox/faults", json=faults)).status_code == 200
    async with httpx.AsyncClient(base_url=url, timeout=scaled(30)) as client:
        assert (await client.post("/v1/connect/sessions", json={})).status_code == 201
        assert (await client.get("/livez")).status_code == 200  # and keep-alive still works


# -- as `flinks-bff serve` runs --------------------------------------------------------------


def test_flinks_bff_serve_applies_the_limits_from_its_environment(redis_url: str) -> None:
    env = {
        "REDIS_URL": redis_url,
        "BFF_MAX_HEADERS": "20",
        "BFF_REQUEST_TIMEOUT": str(TIMEOUT),
        "BFF_MAX_BODY_BYTES": "1024",
    }
    with bff_processes(env, count=1) as (base_url,):
        with httpx.Client(base_url=base_url, timeout=scaled(30)) as client:
            assert client.get("/livez", headers={f"X-H{i}": "v" for i in range(10)}).is_success
            refused = client.get("/livez", headers={f"X-H{i}": "v" for i in range(30)})
            assert refused.status_code == 431
            big = client.post("/v1/authorize-tokens", content=b"{}" * 1024)
            assert big.status_code == 413
        with connect(base_url) as sock:
            sock.sendall(b"GET /livez HTTP/1.1\r\n")
            _problem(read_response(sock), 408, "request_timeout")
