"""Flinks' webhooks in: verified, de-duplicated, persisted, then processed in the background.

Flinks posts JSON when an extraction ends (`ResponseType` KYC, sent early, or GetAccountsDetail,
the 200's payload) and counts anything but HTTP 200 as a failure, retrying at most 10 times,
30 minutes apart: duplicates are normal, and a slow answer is a failed one. So a delivery is
only checked and stored while Flinks waits (`receive`), and worked on afterwards (`run`).

- Signature: HMAC-SHA256 of the raw body under the UTF-8 secret, Base64, compared in constant
  time. Without a secret (development only: production refuses it) deliveries are believed, and
  a warning says so once per process.
- De-duplication on (`ResponseType`, the link id of `Login.Id`, `RequestId`), or the body's
  SHA-256 when any is missing; the key lives 6 h, longer than Flinks' retries (5 h).
- Persistence: a Redis Stream read by a consumer group (app/store.py `WebhookInbox`), so a
  delivery one replica took and did not finish (it died) is claimed by another after
  `claim_after`. The key and the entry are written in one script, so a delivery is never marked
  seen without being queued. An entry is deleted once processed.
- Processing: the event is matched to a link by `Login.Id` (the keyed hash, `Store.link_id_for`).
  Account data fills the link's cache exactly as a 200 from GetAccountsDetail does, so
  `GET /v1/links/{id}/accounts` answers from it. A KYC event is counted; no personal data is
  kept. `Tag` is the host's own label (not unique, not indexed), so it does not name a link.

Nothing here logs a body, a loginId, a RequestId, a Tag or a signature.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from prometheus_client import CollectorRegistry, Counter
from pydantic import ValidationError

from app.clock import Clock
from app.errors import BadRequest, StoreUnavailable, WebhookSignatureInvalid
from app.flinks import AccountsReady, accounts_in_payload
from app.flows.links import Links
from app.flows.tasks import consumer_name, stop_tasks

if TYPE_CHECKING:
    from app.store import InboxEntry, WebhookInbox  # types only, as in service.py

log = logging.getLogger("app.webhooks")

# The ResponseTypes a metric or a log line names; any other is "other" (the value is Flinks').
KNOWN_TYPES = ("KYC", "GetAccountsDetail")
Received = Literal["queued", "duplicate"]


@dataclass(frozen=True, slots=True)
class WebhookPolicy:
    """`secret` FLINKS_WEBHOOK_SECRET (None: unsigned deliveries are believed, development).
    `seen_ttl`: how long a delivery is remembered (Flinks' 10 retries x 30 min, and more).
    `claim_after`: how long a delivery may sit with a consumer before another takes it over.
    `block`: how long one read waits for a delivery (under the store's 2 s socket timeout)."""

    secret: bytes | None
    seen_ttl: int = 6 * 3600
    claim_after: timedelta = timedelta(seconds=60)
    batch: int = 50
    block: timedelta = timedelta(seconds=1)
    retry_pause: timedelta = timedelta(seconds=1)


def signature_of(secret: bytes, body: bytes) -> str:
    """What Flinks sends: Base64 of HMAC-SHA256(secret, raw body)."""
    return base64.b64encode(hmac.new(secret, body, hashlib.sha256).digest()).decode()


def signature_matches(secret: bytes, body: bytes, presented: str | None) -> bool:
    """Constant time in the signature's content; a missing, non-ASCII or truncated one fails."""
    if presented is None:
        return False
    try:
        given = presented.strip().encode("ascii")
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(signature_of(secret, body).encode(), given)


def _type_label(value: object) -> str:
    return value if isinstance(value, str) and value in KNOWN_TYPES else "other"


def _login_id(event: dict[str, Any]) -> str | None:
    login = event.get("Login")
    login_id = login.get("Id") if isinstance(login, dict) else None
    return login_id if isinstance(login_id, str) and login_id.strip() else None


class WebhookMetrics:
    """The counters in /metrics: made once per app (a lifespan may run again)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.received = Counter(
            "flinks_webhooks_received_total",
            "Flinks webhook deliveries verified and queued, by ResponseType.",
            ["type"],
            registry=registry,
        )
        self.duplicates = Counter(
            "flinks_webhooks_duplicate_total",
            "Flinks webhook deliveries answered 200 but not queued again (already taken).",
            ["type"],
            registry=registry,
        )
        self.invalid = Counter(
            "flinks_webhooks_invalid_total",
            "Flinks webhook deliveries refused: a bad signature (401) or a body not JSON (400).",
            ["reason"],
            registry=registry,
        )
        self.processed = Counter(
            "flinks_webhooks_processed_total",
            "Flinks webhook deliveries processed, by ResponseType and outcome.",
            ["type", "outcome"],
            registry=registry,
        )


class FlinksInbox:
    """Receives deliveries (the route) and processes them (one background consumer per
    process, started and stopped by the app's lifespan)."""

    def __init__(
        self,
        inbox: WebhookInbox,
        links: Links,
        policy: WebhookPolicy,
        clock: Clock,
        metrics: WebhookMetrics,
    ) -> None:
        self._inbox = inbox
        self._links = links
        self._store = links.store
        self.policy = policy
        self._clock = clock
        self.consumer = consumer_name()
        self._task: asyncio.Task[None] | None = None
        self._warned_unsigned = False
        self._metrics = metrics

    # -- in: while Flinks waits ------------------------------------------------------------

    async def receive(self, body: bytes, signature: str | None) -> Received:
        """Checks and stores one delivery: WebhookSignatureInvalid (401) or BadRequest (400)
        before anything is stored; "duplicate" if it was taken before."""
        secret = self.policy.secret
        if secret is None:
            self._warn_unsigned()
        elif not signature_matches(secret, body, signature):
            self._metrics.invalid.labels("signature").inc()
            log.warning("flinks_webhook.signature_invalid", extra={"signed": signature is not None})
            raise WebhookSignatureInvalid
        try:
            text = body.decode("utf-8")
            event = json.loads(text)
        except (UnicodeDecodeError, ValueError, RecursionError):
            event = None
        if not isinstance(event, dict):
            self._metrics.invalid.labels("not_json").inc()
            log.warning("flinks_webhook.unreadable")
            raise BadRequest("The body must be a JSON object.")
        kind = _type_label(event.get("ResponseType"))
        queued = await self._inbox.enqueue(self._digest(event, body), text, self.policy.seen_ttl)
        if not queued:
            self._metrics.duplicates.labels(kind).inc()
            log.info("flinks_webhook.duplicate", extra={"type": kind})
            return "duplicate"
        self._metrics.received.labels(kind).inc()
        log.info("flinks_webhook.received", extra={"type": kind})
        return "queued"

    def _digest(self, event: dict[str, Any], body: bytes) -> str:
        """(ResponseType, link id, RequestId) when all three are there, else the body's hash.
        The loginId enters as its keyed hash: no unkeyed digest of it is stored."""
        response_type, request_id = event.get("ResponseType"), event.get("RequestId")
        login_id = _login_id(event)
        if isinstance(response_type, str) and isinstance(request_id, str) and login_id:
            link_id = self._store.link_id_for(login_id)
            seed = f"event\x00{response_type}\x00{link_id}\x00{request_id.strip().lower()}"
            return hashlib.sha256(seed.encode()).hexdigest()
        return hashlib.sha256(b"body\x00" + body).hexdigest()

    def _warn_unsigned(self) -> None:
        if not self._warned_unsigned:
            self._warned_unsigned = True
            log.warning(
                "flinks_webhook.unsigned",
                extra={
                    "meaning": "FLINKS_WEBHOOK_SECRET is not set: webhook deliveries are "
                    "believed without a signature (development only; production refuses it)"
                },
            )

    # -- out: the background consumer ------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="flinks-webhooks")

    async def stop(self) -> None:
        """Cancels the consumer; a delivery it was working on stays pending for another."""
        task, self._task = self._task, None
        if task is not None:
            await stop_tasks([task])
            await self._inbox.leave(self.consumer)

    async def run(self) -> None:
        """Forever: take over what a dead consumer left, then read new deliveries. A Redis
        failure pauses the loop; the deliveries wait in the stream."""
        block_ms = int(self.policy.block.total_seconds() * 1000)
        claim_ms = int(self.policy.claim_after.total_seconds() * 1000)
        grouped = False
        while True:
            try:
                if not grouped:
                    await self._inbox.ensure_group()
                    grouped = True
                for entry in await self._inbox.claim(self.consumer, claim_ms, self.policy.batch):
                    await self.process(entry)
                for entry in await self._inbox.read(self.consumer, self.policy.batch, block_ms):
                    await self.process(entry)
            except StoreUnavailable:
                log.warning("flinks_webhook.store_unavailable")
                await asyncio.sleep(self.policy.retry_pause.total_seconds())

    async def process(self, entry: InboxEntry) -> None:
        """Works on one delivery and removes it. A store failure leaves it pending (claimed
        again later); anything else is recorded and the delivery dropped, so one bad event
        cannot stall the queue."""
        kind, outcome = "other", "failed"
        try:
            kind, outcome = await self._handle(entry.body)
        except StoreUnavailable:
            raise
        except Exception as exc:
            # The type only, no traceback: an exception's message may quote the event's data.
            log.error("flinks_webhook.failed", extra={"error": type(exc).__name__})  # noqa: TRY400
        await self._inbox.done(entry.entry_id)
        self._metrics.processed.labels(kind, outcome).inc()
        log.info("flinks_webhook.processed", extra={"type": kind, "outcome": outcome})

    async def _handle(self, body: str | None) -> tuple[str, str]:
        if body is None:  # sealed under another key (a development restart)
            return "other", "unreadable"
        event = json.loads(body, parse_float=Decimal)
        kind = _type_label(event.get("ResponseType"))
        login_id = _login_id(event)
        if login_id is None:
            return kind, "no_login"
        link = await self._store.get_link(self._store.link_id_for(login_id))
        if link is None or link.status != "active":
            log.info("flinks_webhook.unknown_login", extra={"type": kind})
            return kind, "unknown_login"
        if kind == "KYC":
            log.info("flinks_webhook.kyc", extra={"link_id": link.link_id})
            return kind, "recorded"
        if kind != "GetAccountsDetail":
            return kind, "ignored"
        try:
            accounts = accounts_in_payload(event)
        except ValidationError:
            log.warning("flinks_webhook.accounts_unreadable", extra={"link_id": link.link_id})
            return kind, "unreadable"
        await self._links.accept_data(link, AccountsReady(request_id="", accounts=accounts))
        log.info("flinks_webhook.accounts_cached", extra={"link_id": link.link_id})
        return kind, "accounts_cached"
