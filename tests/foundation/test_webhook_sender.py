"""The events-out sender (app/outbound): Standard Webhooks signatures a receiver's library
verifies, what counts as delivered, and the refusal of destinations inside the network.

Real receivers on local sockets where the destination may be local; where the test needs a
public address (which this machine cannot reach), the name's resolution and the transport are
stand-ins that record what would have been sent."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from app.outbound import WebhookSender, private_address
from tests.integration.event_receiver import PATH, SECRET, Receiver

WHEN = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
BODY = '{"type":"link.deleted","timestamp":"2026-11-29T12:00:00+00:00","data":{"link_id":"L"}}'


def _sender(http: httpx.AsyncClient, url: str, *, allow_private: bool = True) -> WebhookSender:
    return WebhookSender(http, url, SECRET, timeout=2.0, allow_private=allow_private)


async def test_a_delivery_is_signed_as_the_reference_library_verifies(
    receiver: Receiver, receiver_url: str
) -> None:
    async with httpx.AsyncClient(follow_redirects=False) as http:
        attempt = await _sender(http, receiver_url).send("msg_1", BODY, datetime.now(UTC))
    assert (attempt.outcome, attempt.status) == ("delivered", 204)
    (delivery,) = receiver.deliveries
    assert delivery.verified
    assert delivery.event_id == "msg_1"
    assert delivery.headers["content-type"] == "application/json"
    # Byte for byte what the spec's own signer makes for this id, time and body.
    timestamp = int(delivery.headers["webhook-timestamp"])
    expected = Webhook(SECRET).sign("msg_1", datetime.fromtimestamp(timestamp, UTC), BODY)
    assert delivery.headers["webhook-signature"] == expected


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(200, "delivered"), (299, "delivered"), (301, "failed"), (410, "failed"), (500, "failed")],
)
async def test_only_a_2xx_is_delivered_and_a_redirect_is_not_followed(
    receiver: Receiver, receiver_url: str, status: int, outcome: str
) -> None:
    receiver.status = status
    async with httpx.AsyncClient(follow_redirects=False) as http:
        attempt = await _sender(http, receiver_url).send("msg_2", BODY, WHEN)
    assert (attempt.outcome, attempt.status) == (outcome, status)
    assert len(receiver.deliveries) == 1


async def test_an_answer_later_than_the_deadline_is_a_failure(
    receiver: Receiver, receiver_url: str
) -> None:
    receiver.hold()
    try:
        async with httpx.AsyncClient() as http:
            sender = WebhookSender(http, receiver_url, SECRET, timeout=0.2, allow_private=True)
            attempt = await sender.send("msg_3", BODY, WHEN)
    finally:
        receiver.release()
    assert (attempt.outcome, attempt.status, attempt.detail) == ("failed", None, "timeout")


async def test_nobody_listening_is_a_failure_not_an_error() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
        async with httpx.AsyncClient() as http:
            attempt = await _sender(http, f"http://127.0.0.1:{port}{PATH}").send(
                "msg_4", BODY, WHEN
            )
    assert (attempt.outcome, attempt.status) == ("failed", None)
    assert attempt.detail == "ConnectError"


# -- destinations inside the network ---------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "localhost",
        "api.localhost",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # shared address space
        "0.0.0.0",  # noqa: S104 - a value under test
        "[::1]",
        "[fe80::1]",
        "[fc00::1]",
        "[::ffff:10.0.0.1]",  # an IPv4-mapped private address
        "224.0.0.1",
    ],
)
def test_addresses_inside_the_network_are_private(host: str) -> None:
    assert private_address(host)


@pytest.mark.parametrize("host", ["93.184.216.34", "[2606:4700::1111]", "hooks.example.com"])
def test_public_addresses_and_names_to_resolve_are_not(host: str) -> None:
    assert not private_address(host)


async def test_a_private_destination_is_refused_before_any_connection(
    receiver: Receiver, receiver_url: str
) -> None:
    by_name = receiver_url.replace("127.0.0.1", socket.gethostname())  # resolves inside the network
    async with httpx.AsyncClient() as http:
        for destination in (receiver_url, by_name):
            attempt = await _sender(http, destination, allow_private=False).send(
                "msg_5", BODY, WHEN
            )
            assert attempt.outcome == "refused", destination
    assert receiver.deliveries == []


class _Recorder(httpx.AsyncBaseTransport):
    """Stands in for the internet: records each request and answers 204."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(204)


def _resolving_to(monkeypatch: pytest.MonkeyPatch, *addresses: str) -> None:
    async def getaddrinfo(host: str, port: int, **_: Any) -> list[Any]:
        family = socket.AF_INET6 if ":" in addresses[0] else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]

    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)


async def test_a_public_name_is_sent_to_the_address_checked_with_its_name_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DNS rebinding: the connection goes to the address that was checked, not to whatever the
    name resolves to a moment later; the Host header and TLS SNI keep the name."""
    _resolving_to(monkeypatch, "93.184.216.34")
    recorder = _Recorder()
    async with httpx.AsyncClient(transport=recorder) as http:
        sender = _sender(http, "https://hooks.example.com:8443/bff?x=1", allow_private=False)
        attempt = await sender.send("msg_6", BODY, WHEN)
    assert attempt.outcome == "delivered"
    (request,) = recorder.requests
    assert str(request.url) == "https://93.184.216.34:8443/bff?x=1"
    assert request.headers["host"] == "hooks.example.com:8443"
    assert request.extensions["sni_hostname"] == "hooks.example.com"


async def test_a_name_with_any_private_address_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _resolving_to(monkeypatch, "93.184.216.34", "10.0.0.7")
    recorder = _Recorder()
    async with httpx.AsyncClient(transport=recorder) as http:
        attempt = await _sender(http, "https://hooks.example.com/bff", allow_private=False).send(
            "msg_7", BODY, WHEN
        )
    assert attempt.outcome == "refused"
    assert recorder.requests == []
