"""The BFF's events out: what the host backend is told, written with the change that causes it.

Events: `link.connected` (a flow filed its link), `link.failed` (a flow failed), `link.deleted`,
`accounts.ready` (a link's account data is cached). The body is
`{"type", "timestamp", "data": {"link_id", "owner", "institution", ...}}`, never a loginId (the
host backend reads that from the internal API).

At least once, nothing lost when a process dies:
1. The store writes the event to the changed record's outbox in the same script or transaction
   as the change (`Store.write_link`, `replace_flow`, `put_data`).
2. This process relays it at once to the delivery stream (app/store.py `EventQueue.relay`, which
   takes its id once). An event whose process died before relaying it is relayed by the sweep:
   one process at a time scans the outboxes every `sweep_every`.
3. A Redis Streams consumer group delivers it from whichever replica is alive
   (`EventDelivery`). An entry a dead consumer left is claimed by another after `claim_after`.
   Each failure waits a full-jitter exponential backoff; past `max_age` the event is
   dead-lettered. A link's events go one at a time, in order: only the first undelivered
   event of a link is ever in the stream.
The event id (`webhook-id`) is drawn when the event is made and kept across every attempt, so a
receiver de-duplicates on it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

from app.clock import Clock
from app.errors import StoreUnavailable
from app.flows.records import EventType, FlowRecord, LinkRecord, OutboxEvent
from app.flows.tasks import consumer_name, stop_tasks
from app.outbound import Attempt

if TYPE_CHECKING:
    from app.store import EventQueue, QueuedEvent

log = logging.getLogger("app.events")

EVENT_TYPES: tuple[EventType, ...] = (
    "link.connected",
    "link.failed",
    "link.deleted",
    "accounts.ready",
)


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


class Events:
    """Makes the events the store writes with their changes (None when events are off), and
    hears which outbox was written (`written`), for the relay to move it at once."""

    def __init__(self, clock: Clock, *, enabled: bool) -> None:
        self.enabled = enabled
        self._clock = clock
        self._listener: Callable[[str], None] | None = None

    def listen(self, listener: Callable[[str], None] | None) -> None:
        self._listener = listener

    def written(self, event: OutboxEvent | None, tag: str) -> None:
        """The change that carried `event` is stored, in the outbox of `tag`."""
        if event is not None and self._listener is not None:
            self._listener(tag)

    def link_connected(self, link: LinkRecord, *, tag: str | None) -> OutboxEvent | None:
        # One flow connects a link once, but may file it twice: a replica that dies between
        # filing the link and recording the flow's outcome leaves the flow to be taken over and
        # filed again. The id is the flow's and the link's, so the relay takes the event once.
        stable = hashlib.sha256(f"link.connected\x00{link.flow_id}\x00{link.link_id}".encode())
        return self._make(
            "link.connected",
            link.link_id,
            {**_link_data(link), "flow_id": link.flow_id, "tag": tag},
            event_id="msg_" + base64.urlsafe_b64encode(stable.digest()[:18]).decode(),
        )

    def link_deleted(self, link: LinkRecord) -> OutboxEvent | None:
        return self._make("link.deleted", link.link_id, _link_data(link))

    def accounts_ready(
        self, link: LinkRecord, *, accounts: int, refreshed_at: datetime
    ) -> OutboxEvent | None:
        return self._make(
            "accounts.ready",
            link.link_id,
            {**_link_data(link), "accounts": accounts, "refreshed_at": refreshed_at.isoformat()},
        )

    def link_failed(self, flow: FlowRecord, *, code: str, message: str) -> OutboxEvent | None:
        data = {
            "link_id": flow.link_id,
            "owner": flow.owner,
            "institution": flow.institution,
            "flow_id": flow.flow_id,
            "kind": flow.kind,
            "tag": flow.tag,
            "error": {"code": code, "message": message},
        }
        return self._make("link.failed", flow.link_id or flow.flow_id, data)

    def _make(
        self, kind: EventType, order: str, data: dict[str, Any], *, event_id: str | None = None
    ) -> OutboxEvent | None:
        if not self.enabled:
            return None
        now = self._clock.now()
        body = {"type": kind, "timestamp": now.isoformat(), "data": data}
        return OutboxEvent(
            event_id=event_id or f"msg_{secrets.token_urlsafe(18)}",
            order=order,
            body=json.dumps(body, separators=(",", ":"), ensure_ascii=False),
            created_ms=_ms(now),
        )


def _link_data(link: LinkRecord) -> dict[str, Any]:
    return {"link_id": link.link_id, "owner": link.owner, "institution": link.institution}


class Sender(Protocol):
    async def send(self, event_id: str, body: str, when: datetime) -> Attempt: ...


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """`max_age` BFF_WEBHOOK_MAX_AGE: how long an event is retried before it is dead-lettered.
    Backoff: a random wait up to min(`backoff_cap`, `backoff_base` x 2^failures) (full jitter).
    `claim_after`: how long an entry may sit with a consumer before another takes it over (more
    than one attempt's deadline). `sweep_every`: how often outboxes are swept."""

    max_age: timedelta = timedelta(hours=24)
    backoff_base: timedelta = timedelta(seconds=2)
    backoff_cap: timedelta = timedelta(hours=1)
    claim_after: timedelta = timedelta(seconds=60)
    sweep_every: timedelta = timedelta(seconds=15)
    batch: int = 32
    block: timedelta = timedelta(seconds=1)
    retry_pause: timedelta = timedelta(seconds=1)
    relay_batch: int = 100

    def backoff(self, failures: int, draw: Callable[[float, float], float]) -> timedelta:
        ceiling = min(
            self.backoff_cap.total_seconds(),
            self.backoff_base.total_seconds() * 2 ** min(failures, 32),
        )
        return timedelta(seconds=draw(0.0, ceiling))


class DeliveryMetrics:
    """What /metrics shows of the events out: made once per app (a lifespan may run again)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.attempts = Counter(
            "bff_webhooks_attempts_total",
            "Attempts to deliver an event to BFF_WEBHOOK_URL, by event type and outcome "
            "(delivered, failed, refused: not a public destination).",
            ["type", "outcome"],
            registry=registry,
        )
        self.dead = Counter(
            "bff_webhooks_dead_lettered_total",
            "Events given up on after BFF_WEBHOOK_MAX_AGE, by type (in the dead-letter stream).",
            ["type"],
            registry=registry,
        )
        self.backlog = Gauge(
            "bff_webhooks_backlog",
            "Events not yet delivered, as last seen by this process: queued (a link's next "
            "event, in the stream), waiting (a backoff) and dead (the dead-letter stream).",
            ["state"],
            registry=registry,
        )


def _log_pause(task: str, exc: Exception) -> None:
    """A background loop pauses on a failure and goes on; the type only (a message may quote
    an event's data)."""
    if isinstance(exc, StoreUnavailable):
        log.warning("events.store_unavailable", extra={"task": task})
    else:
        log.error("events.failed", extra={"task": task, "error": type(exc).__name__})


def _event_type(body: str) -> str:
    try:
        kind = json.loads(body).get("type")
    except (ValueError, AttributeError):
        return "other"
    return kind if kind in EVENT_TYPES else "other"


class EventDelivery:
    """The relay (outbox -> stream, with the sweep) and the consumer (stream -> the host
    backend), two background tasks per process, started and stopped by the app's lifespan."""

    def __init__(
        self,
        queue: EventQueue,
        sender: Sender,
        events: Events,
        policy: DeliveryPolicy,
        clock: Clock,
        metrics: DeliveryMetrics,
        *,
        draw: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self._queue = queue
        self._sender = sender
        self._events = events
        self.policy = policy
        self._clock = clock
        self._metrics = metrics
        self._draw = draw
        self.consumer = consumer_name()
        self._written: asyncio.Queue[str] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        if not self._tasks:
            self._events.listen(self._written.put_nowait)
            self._tasks = [
                asyncio.create_task(self.relay_forever(), name="events-relay"),
                asyncio.create_task(self.deliver_forever(), name="events-delivery"),
            ]

    async def stop(self) -> None:
        """Cancels both tasks: an attempt in flight stays pending for another consumer, an
        outbox not yet relayed waits for the sweep."""
        self._events.listen(None)
        tasks, self._tasks = self._tasks, []
        await stop_tasks(tasks)
        if tasks:
            await self._queue.leave(self.consumer)

    # -- outbox -> stream --------------------------------------------------------------------

    async def relay_forever(self) -> None:
        sweep_every = self.policy.sweep_every.total_seconds()
        loop = asyncio.get_running_loop()
        next_sweep = loop.time()
        while True:
            tags: set[str] = set()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_sweep - loop.time())):
                    tags.add(await self._written.get())
            while not self._written.empty():
                tags.add(self._written.get_nowait())
            try:
                if loop.time() >= next_sweep:
                    next_sweep = loop.time() + sweep_every
                    tags |= await self._sweep_tags()
                    await self._count()
                for tag in sorted(tags):
                    await self.relay(tag)
            except Exception as exc:  # the relay outlives any one failure
                _log_pause("relay", exc)
                for tag in tags:  # tried again on the next turn
                    self._written.put_nowait(tag)
                await asyncio.sleep(self.policy.retry_pause.total_seconds())

    async def _sweep_tags(self) -> set[str]:
        ttl_ms = int(self.policy.sweep_every.total_seconds() * 1000)
        if not await self._queue.take_sweep(self.consumer, ttl_ms):
            return set()
        return set(await self._queue.outbox_tags())

    async def relay(self, tag: str) -> int:
        """Moves everything in one outbox to the stream, in order; how many it moved."""
        moved = 0
        seen_ttl = int(self.policy.max_age.total_seconds()) + 86400
        while True:
            entries = await self._queue.outbox(tag, self.policy.relay_batch)
            if not entries:
                return moved
            for _, event in entries:
                moved += await self._queue.relay(event, seen_ttl, seen_ttl)
            await self._queue.trim_outbox(tag, [entry_id for entry_id, _ in entries])
            if len(entries) < self.policy.relay_batch:
                return moved

    async def _count(self) -> None:
        queued, waiting, dead = await self._queue.counts()
        self._metrics.backlog.labels("queued").set(queued)
        self._metrics.backlog.labels("waiting").set(waiting)
        self._metrics.backlog.labels("dead").set(dead)

    # -- stream -> the host backend -------------------------------------------------------------

    async def deliver_forever(self) -> None:
        block_ms = int(self.policy.block.total_seconds() * 1000)
        claim_ms = int(self.policy.claim_after.total_seconds() * 1000)
        grouped = False
        while True:
            try:
                if not grouped:
                    await self._queue.ensure_group()
                    grouped = True
                await self._queue.requeue_due(_ms(self._clock.now()), self.policy.batch)
                claimed = await self._queue.claim(self.consumer, claim_ms, self.policy.batch)
                await self._deliver_all(claimed)
                fresh = await self._queue.read(self.consumer, self.policy.batch, block_ms)
                await self._deliver_all(fresh)
            except Exception as exc:  # the consumer outlives any one failure
                _log_pause("delivery", exc)
                await asyncio.sleep(self.policy.retry_pause.total_seconds())

    async def _deliver_all(self, items: list[QueuedEvent]) -> None:
        """Concurrently: each is the first undelivered event of its own link."""
        if items:
            await asyncio.gather(*(self.deliver(item) for item in items))

    async def deliver(self, item: QueuedEvent) -> None:
        if item.body is None:  # expired, or done by a consumer presumed dead
            await self._queue.finish(item)
            return
        kind = _event_type(item.body)
        now = self._clock.now()
        try:
            attempt = await self._sender.send(item.event_id, item.body, now)
        except Exception as exc:  # one event's surprise must not stop the rest
            attempt = Attempt("failed", detail=type(exc).__name__)
        self._metrics.attempts.labels(kind, attempt.outcome).inc()
        if attempt.outcome == "delivered":
            await self._queue.finish(item)
            log.info("event.delivered", extra={"type": kind, "attempts": item.attempts + 1})
            return
        wait = self.policy.backoff(item.attempts, self._draw)
        due = now + wait
        if _ms(due) - item.created_ms > self.policy.max_age.total_seconds() * 1000:
            reason = attempt.detail if attempt.status is None else f"status {attempt.status}"
            await self._queue.finish(item, dead_reason=reason)
            self._metrics.dead.labels(kind).inc()
            log.error(
                "event.dead_lettered",
                extra={"type": kind, "attempts": item.attempts + 1, "reason": reason},
            )
            return
        await self._queue.retry_at(item, _ms(due))
        log.warning(
            "event.attempt_failed",
            extra={
                "type": kind,
                "outcome": attempt.outcome,
                "status": attempt.status,
                "detail": attempt.detail,
                "retry_in_s": round(wait.total_seconds(), 1),
            },
        )
