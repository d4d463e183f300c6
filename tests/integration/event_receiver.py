"""A host backend for the BFF's events out, on a real socket: it verifies each delivery with the
Standard Webhooks reference library (`standardwebhooks`), records it, and answers as the test
says (a status, or holding the request until released)."""

from __future__ import annotations

import base64
import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from standardwebhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.ports import PortReservation, reserve_port, serve_in_thread

# A fixed key: no randomness in the tests (never a production secret).
SECRET = "whsec_" + base64.b64encode(b"flinks-bff events-out test key!!").decode()
PATH = "/hooks/bff"


@dataclass(frozen=True)
class Delivery:
    """One request as received: its webhook-id, whether its signature verified, its body."""

    event_id: str
    verified: bool
    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def type(self) -> str:
        return str(self.body.get("type"))

    @property
    def link_id(self) -> str | None:
        value = self.body.get("data", {}).get("link_id")
        return value if isinstance(value, str) else None


class Receiver:
    """Answers `status` (204 unless told), or holds each request while `holding` is set."""

    def __init__(self, secret: str = SECRET) -> None:
        self._verifier = Webhook(secret)
        self._lock = threading.Lock()
        self._deliveries: list[Delivery] = []
        self.status = 204
        self.fail_next = 0  # answer 500 to this many requests first
        self._released = threading.Event()
        self._released.set()
        self.app = Starlette(routes=[Route(PATH, self._receive, methods=["POST"])])

    async def _receive(self, request: Request) -> Response:
        raw = await request.body()
        headers = dict(request.headers)
        try:
            self._verifier.verify(raw, headers)
            verified = True
        except WebhookVerificationError:
            verified = False
        delivery = Delivery(headers.get("webhook-id", ""), verified, json.loads(raw), headers)
        with self._lock:
            self._deliveries.append(delivery)
            failing = self.fail_next > 0
            if failing:
                self.fail_next -= 1
        if not self._released.is_set():
            await anyio.to_thread.run_sync(self._released.wait)
        return Response(status_code=500 if failing else self.status)

    def hold(self) -> None:
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    @property
    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._deliveries)

    def delivered(self) -> list[Delivery]:
        """The first delivery of each webhook-id, in order of arrival (what a receiver that
        de-duplicates keeps)."""
        seen: set[str] = set()
        kept = []
        for delivery in self.deliveries:
            if delivery.event_id not in seen:
                seen.add(delivery.event_id)
                kept.append(delivery)
        return kept

    def types(self) -> list[str]:
        return [d.type for d in self.delivered()]


@contextlib.contextmanager
def receiving(receiver: Receiver, reservation: PortReservation | None = None) -> Iterator[str]:
    """Serves the receiver (on `reservation`'s port if given); yields the URL to post to."""
    with serve_in_thread(receiver.app, reservation=reservation, name="receiver") as served:
        yield f"{served.url}{PATH}"


def reserved_url() -> tuple[PortReservation, str]:
    """A port nobody listens on yet (connections are refused) and the URL it will serve."""
    reservation = reserve_port()
    return reservation, f"{reservation.url}{PATH}"
