"""Flinks' webhooks in (POST /v1/webhooks/flinks), over real sockets with the BFF's own HTTP
protocol, a real Redis (the inbox is a Redis Stream read by a consumer group) and the sandbox:
signatures under either header name, refusals that store nothing, the body cap, de-duplication
of Flinks' retries, a burst processed in full, and account data that fills a link's cache."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import io
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any, cast

import httpx
import pytest
from redis.asyncio import Redis

import app.main
from app.flows.webhooks import WebhookPolicy
from app.main import create_app
from app.observability import configure_logging
from app.sandbox import data as sandbox_data
from app.settings import Settings
from app.store import INBOX_GROUP, INBOX_KEY, Sealer, WebhookInbox
from tests.conftest import metric_sum
from tests.integration.conftest import Sandbox, bff_settings
from tests.integration.edge_servers import connect as raw_connect
from tests.integration.edge_servers import edge_bff, head, read_response
from tests.integration.link_steps import connect
from tests.waiting import wait_until_async

SECRET = "whin-test-secret-é"  # UTF-8, not only ASCII: the key is the secret's UTF-8 bytes
PATH = "/v1/webhooks/flinks"
PROCESSED = "flinks_webhooks_processed_total"
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def sign(body: bytes, secret: str = SECRET) -> str:
    """What Flinks sends: Base64 of HMAC-SHA256 of the raw body under the UTF-8 secret."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def kyc(login_id: str, request_id: str, tag: str | None = None) -> dict[str, Any]:
    return {
        "ResponseType": "KYC",
        "HttpStatusCode": 200,
        "Login": {"Id": login_id, "Username": "greatday_nomfa", "Type": "Personal"},
        "Tag": tag,
        "RequestId": request_id,
        "Institution": "FlinksCapital",
    }


def accounts_detail(login_id: str, request_id: str, tag: str | None = None) -> dict[str, Any]:
    """GetAccountsDetail's 200 (contract 6.2) as the sandbox makes it, plus `ResponseType`."""
    accounts = sandbox_data.accounts_detail(login_id, date.today(), sandbox_data.DetailOptions())
    login = {"Id": login_id, "Username": "greatday_nomfa", "Type": "Personal"}
    return {
        "ResponseType": "GetAccountsDetail",
        **sandbox_data.envelope(accounts, login, request_id, tag),
    }


def numbered(i: int) -> str:
    """A fixed, distinct GUID for delivery `i` (no randomness in the tests)."""
    return str(uuid.UUID(int=0x5EB0_0000_0000_4000_8000_0000_0000_0000 + i))


@dataclass
class Bff:
    url: str
    http: httpx.AsyncClient
    redis: Redis

    async def deliver(
        self, event: dict[str, Any] | bytes, *, header: str = "flinks-authenticity-key", **kw: Any
    ) -> httpx.Response:
        body = event if isinstance(event, bytes) else json.dumps(event).encode()
        headers = {"content-type": "application/json", header: sign(body), **kw.pop("headers", {})}
        return await self.http.post(PATH, content=body, headers=headers, **kw)

    async def metric(self, name: str, **labels: str) -> float:
        """The sum of `name`'s samples whose labels include `labels`."""
        return await metric_sum(self.http, name, **labels)

    async def processed(self, count: int, **labels: str) -> None:
        async def reached() -> bool:
            return await self.metric(PROCESSED, **labels) >= count

        await wait_until_async(reached, what=f"{count} webhook deliveries processed {labels}")
        assert await self.metric(PROCESSED, **labels) == count

    async def stored(self) -> tuple[int, list[str]]:
        """Entries in the inbox stream, and the de-duplication keys."""
        length = await self.redis.xlen(INBOX_KEY) if await self.redis.exists(INBOX_KEY) else 0
        return length, [key async for key in self.redis.scan_iter("bff:v1:flinksseen:*")]


@pytest.fixture
def serve(
    redis_url: str, redis: Redis, sandbox: Sandbox
) -> Callable[..., contextlib.AbstractAsyncContextManager[Bff]]:
    """Serves a BFF (webhooks on, signed with SECRET, unless overridden) on a real socket."""

    @contextlib.asynccontextmanager
    async def serving(**overrides: object) -> AsyncIterator[Bff]:
        values = {"FLINKS_WEBHOOKS": True, "FLINKS_WEBHOOK_SECRET": SECRET, **overrides}
        settings = bff_settings(redis_url, sandbox, **values)
        with edge_bff(create_app(settings), settings) as url:
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                yield Bff(url, http, redis)

    return serving


@pytest.fixture
async def bff(
    serve: Callable[..., contextlib.AbstractAsyncContextManager[Bff]],
) -> AsyncIterator[Bff]:
    async with serve() as served:
        yield served


# -- signatures ------------------------------------------------------------------------------------


async def test_a_delivery_signed_under_the_default_header_is_taken_and_processed(bff: Bff) -> None:
    response = await bff.deliver(kyc(numbered(1), numbered(2)))
    assert response.status_code == 200, response.text
    assert response.json() == {"received": True}
    await bff.processed(1, type="KYC", outcome="unknown_login")
    assert await bff.metric("flinks_webhooks_received_total", type="KYC") == 1
    length, _ = await bff.stored()
    assert length == 0  # processed entries are deleted


async def test_the_header_name_is_the_configured_one_exactly(
    serve: Callable[..., contextlib.AbstractAsyncContextManager[Bff]],
) -> None:
    async with serve(FLINKS_WEBHOOK_HEADER="X-Flinks-Signature") as bff:
        event = kyc(numbered(1), numbered(2))
        # Any case of the configured name; the other documented name does not count.
        assert (await bff.deliver(event, header="x-flinks-signature")).status_code == 200
        refused = await bff.deliver(kyc(numbered(3), numbered(4)))
        assert refused.status_code == 401
        assert refused.json()["code"] == "webhook_signature_invalid"
        await bff.processed(1)


def _tampered(body: bytes) -> dict[str, bytes]:
    good = sign(body)
    signatures = {
        "another body's": sign(body + b" "),
        "another secret's": sign(body, "not-the-secret"),
        "truncated": good[:-4],
        "hex, not base64": hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
        "empty": "",
        "not ascii": good[:-1] + "é",
    }
    return {what: signature.encode() for what, signature in signatures.items()}


async def test_bad_missing_and_truncated_signatures_are_401_and_store_nothing(bff: Bff) -> None:
    body = json.dumps(kyc(numbered(1), numbered(2))).encode()
    for what, signature in _tampered(body).items():
        response = await bff.http.post(
            PATH, content=body, headers={b"flinks-authenticity-key": signature}
        )
        assert response.status_code == 401, what
        assert response.json()["code"] == "webhook_signature_invalid", what
    missing = await bff.http.post(PATH, content=body)
    assert missing.status_code == 401
    assert await bff.stored() == (0, [])
    assert await bff.metric("flinks_webhooks_invalid_total", reason="signature") == 7
    # The same delivery, signed, is still taken: nothing about it was remembered.
    assert (await bff.deliver(body)).status_code == 200
    await bff.processed(1)


async def test_a_signed_body_that_is_not_a_json_object_is_400(bff: Bff) -> None:
    for body in (b"not json", b"[1, 2]", b"\xff\xfe"):
        response = await bff.deliver(body)
        assert response.status_code == 400, body
        assert response.json()["code"] == "bad_request"
    assert await bff.stored() == (0, [])


# -- size ------------------------------------------------------------------------------------------


async def test_a_body_over_the_webhook_cap_is_413_before_it_is_read(
    serve: Callable[..., contextlib.AbstractAsyncContextManager[Bff]],
) -> None:
    async with serve(BFF_MAX_BODY_BYTES=1024, FLINKS_WEBHOOK_MAX_BYTES=64 * 1024) as bff:
        # Content-Length over the cap, and no byte of the body sent: the answer comes anyway.
        sock = raw_connect(bff.url)
        with sock:
            sock.sendall(head("POST", PATH, f"Content-Length: {64 * 1024 + 1}", "") + b"\r\n")
            response = await asyncio.to_thread(read_response, sock, "POST")
        assert response.status == 413
        assert json.loads(response.body)["code"] == "payload_too_large"
        # Chunked (no Content-Length): cut at the cap.
        big = b"x" * (64 * 1024 + 1)

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(big), 8192):
                yield big[start : start + 8192]

        cut = await bff.http.post(PATH, content=chunks(), headers={"x": "1"})
        assert cut.status_code == 413
        assert await bff.stored() == (0, [])
        # Over BFF_MAX_BODY_BYTES but under the webhook's own cap: taken here, refused elsewhere.
        event = kyc(numbered(1), numbered(2), tag="t" * 4000)
        assert (await bff.deliver(event)).status_code == 200
        other = await bff.http.post(
            "/v1/connect/sessions",
            content=json.dumps({"tag": "t" * 4000}),
            headers={"content-type": "application/json"},
        )
        assert other.status_code == 413
        await bff.processed(1)


# -- de-duplication and volume ---------------------------------------------------------------------


async def test_the_same_delivery_replayed_ten_times_is_processed_once(bff: Bff) -> None:
    event = kyc(numbered(1), numbered(2))
    for _ in range(10):
        response = await bff.deliver(event)
        assert response.status_code == 200
        assert response.json() == {"received": True}
    # A retry may be re-serialized by Flinks: the same (type, login, RequestId) is a duplicate.
    assert (await bff.deliver(json.dumps(event, indent=2).encode())).status_code == 200
    # A later, distinct delivery: once it is processed, any duplicate queued before it would be.
    assert (await bff.deliver(kyc(numbered(1), numbered(3)))).status_code == 200
    await bff.processed(2)
    assert await bff.metric("flinks_webhooks_received_total") == 2
    assert await bff.metric("flinks_webhooks_duplicate_total") == 10
    # A body without the three keys is de-duplicated by its hash.
    bare = {"ResponseType": "KYC", "Tag": "x"}
    for _ in range(3):
        assert (await bff.deliver(bare)).status_code == 200
    await bff.processed(1, outcome="no_login")
    assert await bff.metric("flinks_webhooks_duplicate_total") == 12


async def test_a_burst_of_200_distinct_deliveries_is_processed_in_full(bff: Bff) -> None:
    events = [kyc(numbered(i), numbered(1000 + i)) for i in range(200)]
    responses = await asyncio.gather(*(bff.deliver(event) for event in events))
    assert [r.status_code for r in responses] == [200] * 200
    await bff.processed(200, type="KYC", outcome="unknown_login")
    assert await bff.metric("flinks_webhooks_duplicate_total") == 0
    length, seen = await bff.stored()
    assert length == 0
    assert len(seen) == 200


async def test_an_unknown_login_is_recorded_and_the_consumer_goes_on(bff: Bff) -> None:
    detail = accounts_detail(numbered(7), numbered(8))
    assert (await bff.deliver(detail)).status_code == 200
    await bff.processed(1, type="GetAccountsDetail", outcome="unknown_login")
    assert (await bff.deliver(kyc(numbered(9), numbered(10)))).status_code == 200
    await bff.processed(1, type="KYC", outcome="unknown_login")
    assert (await bff.http.get("/readyz")).status_code == 200


async def test_a_delivery_a_dead_consumer_left_pending_is_claimed_and_processed(
    serve: Callable[..., contextlib.AbstractAsyncContextManager[Bff]],
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another replica took a delivery and died before finishing it: this one claims it once it
    has been idle for `claim_after` (XAUTOCLAIM) and processes it."""
    key = bytes(range(32))
    original: Callable[[Settings], WebhookPolicy] = app.main._webhook_policy
    monkeypatch.setattr(
        app.main,
        "_webhook_policy",
        lambda settings: replace(original(settings), claim_after=timedelta(milliseconds=200)),
    )
    inbox = WebhookInbox(redis, Sealer(key))
    await inbox.ensure_group()
    event = kyc(numbered(1), numbered(2))
    assert await inbox.enqueue("a-digest", json.dumps(event), 60)
    taken = cast(
        list[Any], await redis.xreadgroup(INBOX_GROUP, "dead-replica", {INBOX_KEY: ">"}, count=10)
    )
    assert len(taken[0][1]) == 1
    assert await inbox.pending() == 1
    encryption_key = base64.urlsafe_b64encode(key).decode()
    async with serve(BFF_ENCRYPTION_KEY=encryption_key) as bff:
        await bff.processed(1, type="KYC", outcome="unknown_login")
        assert await inbox.pending() == 0
        assert await inbox.length() == 0


# -- account data ----------------------------------------------------------------------------------


async def _data_calls(sandbox: Sandbox) -> int:
    return len(await sandbox.calls("GetAccountsDetail")) + len(
        await sandbox.calls("GetAccountsDetailAsync")
    )


async def test_account_data_in_a_webhook_fills_the_link_cache(bff: Bff, sandbox: Sandbox) -> None:
    linked = await connect(bff.http, sandbox)
    before = await _data_calls(sandbox)
    assert (await bff.deliver(kyc(linked.login_id, numbered(1)))).status_code == 200
    await bff.processed(1, type="KYC", outcome="recorded")
    event = accounts_detail(linked.login_id, numbered(1), tag="host-tag")
    assert (await bff.deliver(event)).status_code == 200
    await bff.processed(1, type="GetAccountsDetail", outcome="accounts_cached")

    response = await bff.http.get(f"/v1/links/{linked.link_id}/accounts")
    assert response.status_code == 200, response.text
    accounts = response.json()["accounts"]
    expected = [sandbox_data.account_id(linked.login_id, t) for t in sandbox_data.ACCOUNTS]
    assert [a["account_id"] for a in accounts] == expected
    assert {a["mask"] for a in accounts} >= {"2347", "4242"}
    transactions = await bff.http.get(f"/v1/links/{linked.link_id}/transactions")
    assert transactions.status_code == 200
    assert transactions.json()["transactions"]
    assert await _data_calls(sandbox) == before  # no Flinks data call: the webhook's data


# -- off, browsers ---------------------------------------------------------------------------------


async def test_the_route_is_404_when_webhooks_are_off(
    serve: Callable[..., contextlib.AbstractAsyncContextManager[Bff]],
) -> None:
    async with serve(FLINKS_WEBHOOKS=False, FLINKS_WEBHOOK_SECRET=None) as bff:
        response = await bff.deliver(kyc(numbered(1), numbered(2)))
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"
        assert await bff.stored() == (0, [])


async def test_no_cors_and_cookies_are_ignored(bff: Bff) -> None:
    origin = "http://127.0.0.1:8000"  # an allowed origin (DEV_CORS_ORIGINS)
    preflight = await bff.http.options(
        PATH, headers={"Origin": origin, "Access-Control-Request-Method": "POST"}
    )
    assert preflight.status_code == 403
    from_page = await bff.deliver(kyc(numbered(1), numbered(2)), headers={"Origin": origin})
    assert from_page.status_code == 403
    assert from_page.json()["code"] == "origin_not_allowed"
    flinks = await bff.deliver(kyc(numbered(3), numbered(4)), headers={"Cookie": "a=b"})
    assert flinks.status_code == 200
    for response in (preflight, from_page, flinks):
        assert not any(name.startswith("access-control-") for name in response.headers)
        assert "set-cookie" not in response.headers
    await bff.processed(1)


# -- canary ----------------------------------------------------------------------------------------


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("DEBUG", stream=stream)
    saved = logging.getLogger("app").level
    logging.getLogger("app").setLevel(logging.DEBUG)
    yield stream
    logging.getLogger("app").setLevel(saved)


def _values(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for value in node.values():
            yield from _values(value)
    elif isinstance(node, list):
        for value in node:
            yield from _values(value)
    elif isinstance(node, str) and len(node) >= 6 and not DATE.fullmatch(node):
        yield node  # a date is in every line's timestamp


async def test_no_body_value_reaches_a_log_line(
    log_lines: io.StringIO, bff: Bff, sandbox: Sandbox
) -> None:
    linked = await connect(bff.http, sandbox)
    event = accounts_detail(linked.login_id, numbered(1), tag="canary-tag-6f1c")
    body = json.dumps(event).encode()
    bad = await bff.http.post(PATH, content=body, headers={"flinks-authenticity-key": "x" * 44})
    assert bad.status_code == 401
    assert (await bff.deliver(body)).status_code == 200
    assert (await bff.deliver(body)).status_code == 200  # a duplicate
    await bff.processed(1, outcome="accounts_cached")
    logged = log_lines.getvalue()
    assert "flinks_webhook.accounts_cached" in logged  # the capture works
    secrets_seen = {linked.login_id, numbered(1), "canary-tag-6f1c", sign(body), SECRET}
    # Every string in the body: names, account numbers, transaction descriptions...
    leaked = {v for v in {*_values(event), *secrets_seen} if v in logged}
    # ...except the few that are our own words in any line (a type, an institution's name).
    assert leaked <= {"GetAccountsDetail", "FlinksCapital", "Personal"}, leaked
