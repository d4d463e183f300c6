"""Flinks' webhooks, emitted: after an extraction, signed POSTs of KYC then GetAccountsDetail.

Flinks posts the JSON of an extraction to the customer's URL, retries anything but a 200 up to
10 times 30 minutes apart, and may sign the raw body (Base64 HMAC-SHA256, UTF-8 secret) in
``flinks-authenticity-key`` or, per a newer guide, ``X-Flinks-Signature`` (contract 6.5, 12.3).
Its docs also say webhooks cannot be tested in its own sandbox, so what they leave open (when
exactly each event leaves, the KYC body beyond ``Holders``, the order) is this sandbox's reading,
listed in the README.

Deliveries run as background tasks on the server's event loop, never inside the API's answer.
One login's deliveries go strictly one after another (retries included), so a receiver sees
them in the order they were emitted. Bodies and secrets are never logged nor listed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import ssl
from collections import deque
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import httpx

from app.sandbox import data
from app.sandbox import payloads as p
from app.sandbox.state import Card, SandboxState
from app.sandbox.switches import WEBHOOK_MAX_ATTEMPTS, WebhookSwitchConfig
from app.sandbox.users import INSTITUTION

KYC = "KYC"
ACCOUNTS_DETAIL = "GetAccountsDetail"
RESPONSE_TYPES = (KYC, ACCOUNTS_DETAIL)
# One attempt's deadline: a receiver that holds the request longer has failed that attempt.
ATTEMPT_TIMEOUT_SECONDS = 10.0
# webhook_bad_signature signs with this in front of the secret: a key the receiver never has.
_WRONG_KEY_PREFIX = b"not-the-webhook-secret:"

DeliveryState = Literal["pending", "delivered", "gave_up"]


@dataclass(frozen=True, slots=True)
class Attempt:
    number: int
    status: int | None  # the receiver's HTTP status; None when no answer came
    error: str | None  # the transport error's class name, when no answer came
    forced_failure: bool  # counted as failed by webhook_fail_first, whatever the answer
    delivered: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "status": self.status,
            "error": self.error,
            "forced_failure": self.forced_failure,
            "delivered": self.delivered,
        }


@dataclass(slots=True)
class Delivery:
    """One copy of one event on its way to the receiver (several with webhook_duplicates)."""

    seq: int
    event_id: str
    copy: int
    response_type: str
    login_id: str
    request_id: str | None
    url: str
    body: bytes
    switches: WebhookSwitchConfig  # as they were when the event was emitted
    signature: str | None
    state: DeliveryState = "pending"
    attempts: list[Attempt] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """What the control API lists: never the body, the secret nor the signature."""
        return {
            "seq": self.seq,
            "event_id": self.event_id,
            "copy": self.copy,
            "response_type": self.response_type,
            "login_id": self.login_id,
            "request_id": self.request_id,
            "header": self.switches.webhook_header,
            "signed": self.signature is not None,
            "bad_signature": self.switches.webhook_bad_signature,
            "state": self.state,
            "attempt_count": len(self.attempts),
            "statuses": [attempt.status for attempt in self.attempts],
            "attempts": [attempt.to_json() for attempt in self.attempts],
            "body_bytes": len(self.body),
            "body_sha256": hashlib.sha256(self.body).hexdigest(),
        }


def sign(secret: str, body: bytes) -> str:
    """Flinks' webhook signature: Base64(HMAC-SHA256(key = UTF-8 secret, message = raw body))."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def kyc_body(card: Card, request_id: str | None, tag: str | None) -> p.JSON:
    """The KYC event: ``ResponseType``, ``HttpStatusCode``, ``Holders`` and ``Login`` as Flinks'
    KYC page shows them; ``Institution``, ``RequestId`` and ``Tag`` are the sandbox's reading."""
    return {
        "ResponseType": KYC,
        "HttpStatusCode": 200,
        "Holders": [data.HOLDER],
        "Login": p.login_object(card),
        "Institution": INSTITUTION,
        "RequestId": request_id,
        "Tag": tag,
    }


class Webhooks:
    """The emitter: one per sandbox app; event-loop use only."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.deliveries: deque[Delivery] = deque(maxlen=state.settings.call_record_limit)
        self._seq = 0
        self._tails: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._ssl: ssl.SSLContext | None = None

    @property
    def enabled(self) -> bool:
        return self.state.settings.webhook_url is not None

    # -- events -------------------------------------------------------------------------------

    def extracted(
        self, card: Card, request_id: str | None, tag: str | None, *, with_detail: bool
    ) -> list[Delivery]:
        """A live sign-in ended 200: KYC, and GetAccountsDetail when the sign-in itself started
        that processing (Connect, the bank page)."""
        deliveries = self.emit(card.login_id, kyc_body(card, request_id, tag))
        if with_detail:
            deliveries += self.accounts_detail(
                card.login_id, self._default_detail(card, request_id, tag)
            )
        return deliveries

    def accounts_detail(self, login_id: str, body: p.JSON) -> list[Delivery]:
        """GetAccountsDetail's processing is done: its 200 body, plus ``ResponseType``."""
        return self.emit(login_id, {**body, "ResponseType": ACCOUNTS_DETAIL})

    def trigger(
        self, card: Card, response_type: str | None, request_id: str, tag: str | None
    ) -> list[Delivery]:
        """The control API's delivery now: one type, or KYC then GetAccountsDetail."""
        deliveries: list[Delivery] = []
        if response_type in (None, KYC):
            deliveries += self.emit(card.login_id, kyc_body(card, request_id, tag))
        if response_type in (None, ACCOUNTS_DETAIL):
            deliveries += self.accounts_detail(
                card.login_id, self._default_detail(card, request_id, tag)
            )
        return deliveries

    def emit(self, login_id: str, payload: p.JSON) -> list[Delivery]:
        """Queue ``payload`` behind the login's earlier deliveries (none when webhooks are off)."""
        url = self.state.settings.webhook_url
        if url is None:
            return []
        switches = self.state.webhook_switches
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        signature = self._signature(body, switches)
        event_id = self.state.new_id()
        deliveries: list[Delivery] = []
        for copy in range(1, switches.webhook_duplicates + 1):
            self._seq += 1
            delivery = Delivery(
                seq=self._seq,
                event_id=event_id,
                copy=copy,
                response_type=str(payload["ResponseType"]),
                login_id=login_id,
                request_id=payload.get("RequestId"),
                url=url,
                body=body,
                switches=switches,
                signature=signature,
            )
            self.deliveries.append(delivery)
            self._schedule(login_id.lower(), delivery)
            deliveries.append(delivery)
        return deliveries

    def reset(self) -> None:
        """Drop every delivery, cancelling those still under way."""
        for task in list(self._tasks):
            task.cancel()
        self._tasks.clear()
        self._tails.clear()
        self.deliveries.clear()
        self._seq = 0

    # -- delivery -----------------------------------------------------------------------------

    def _default_detail(self, card: Card, request_id: str | None, tag: str | None) -> p.JSON:
        today = self.state.clock.utcnow().date()
        return p.accounts_detail_body(card, request_id or "", tag, today, data.DetailOptions())

    def _signature(self, body: bytes, switches: WebhookSwitchConfig) -> str | None:
        secret = self.state.settings.webhook_secret
        if switches.webhook_bad_signature:
            key = _WRONG_KEY_PREFIX + secret.encode()
            return base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode("ascii")
        return sign(secret, body) if secret else None

    def _schedule(self, key: str, delivery: Delivery) -> None:
        previous = self._tails.get(key)
        task = asyncio.get_running_loop().create_task(self._deliver(delivery, previous))
        self._tails[key] = task
        self._tasks.add(task)
        task.add_done_callback(partial(self._finished, key))

    def _finished(self, key: str, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._tails.get(key) is task:
            del self._tails[key]

    async def _deliver(self, delivery: Delivery, previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            await asyncio.wait([previous])  # its outcome does not matter, only its end
        switches = delivery.switches
        headers = {"Content-Type": "application/json", "User-Agent": "flinks-sandbox-webhooks"}
        if delivery.signature is not None:
            headers[switches.webhook_header] = delivery.signature
        async with httpx.AsyncClient(
            verify=self._ssl_context(),
            timeout=ATTEMPT_TIMEOUT_SECONDS,
            follow_redirects=False,
            trust_env=False,
        ) as client:
            for number in range(1, WEBHOOK_MAX_ATTEMPTS + 1):
                if number > 1:
                    await asyncio.sleep(switches.webhook_retry_seconds)
                status: int | None = None
                error: str | None = None
                try:
                    answer = await client.post(delivery.url, content=delivery.body, headers=headers)
                    status = answer.status_code
                except httpx.HTTPError as exc:
                    error = type(exc).__name__
                forced = number <= switches.webhook_fail_first
                # Flinks counts anything but a 200 as a failure (contract 6.5).
                delivered = status == 200 and not forced
                delivery.attempts.append(Attempt(number, status, error, forced, delivered))
                if delivered:
                    delivery.state = "delivered"
                    return
        delivery.state = "gave_up"

    def _ssl_context(self) -> ssl.SSLContext:
        # Built once: a context per delivery would cost tens of milliseconds each.
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl
