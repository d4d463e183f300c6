"""Everything the sandbox remembers. One SandboxState per app instance; event-loop use only."""

from __future__ import annotations

import enum
import random
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

from app.sandbox.challenges import Challenge
from app.sandbox.config import SandboxSettings
from app.sandbox.data import DetailOptions
from app.sandbox.faults import FaultConfig
from app.sandbox.switches import SwitchConfig, WebhookSwitchConfig
from app.sandbox.users import BankUser


class Clock:
    """Wall clock with an offset that the control API can move forward (time travel for TTLs)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def utcnow(self) -> datetime:
        return datetime.fromtimestamp(self.now(), UTC)


class _Expiring(Protocol):
    @property
    def expires_at(self) -> float: ...


V = TypeVar("V", bound=_Expiring)


class ExpiringMap(Generic[V]):
    """A dict whose entries lapse at their ``expires_at``.

    Expired entries are dropped when read and swept whenever the map has doubled since the last
    sweep, so a benchmark minting thousands of tokens a second stays in bounded memory at O(1)
    amortised cost per insert.
    """

    _MIN_SWEEP = 1024

    def __init__(self) -> None:
        self._items: dict[str, V] = {}
        self._sweep_at = self._MIN_SWEEP

    def put(self, key: str, value: V, now: float) -> None:
        self._items[key] = value
        if len(self._items) >= self._sweep_at:
            self.sweep(now)
            self._sweep_at = max(self._MIN_SWEEP, 2 * len(self._items))

    def get(self, key: str, now: float) -> V | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item.expires_at <= now:
            del self._items[key]
            return None
        return item

    def pop(self, key: str) -> V | None:
        return self._items.pop(key, None)

    def sweep(self, now: float) -> None:
        for key in [k for k, v in self._items.items() if v.expires_at <= now]:
            del self._items[key]

    def values(self) -> Iterator[V]:
        return iter(list(self._items.values()))

    def clear(self) -> None:
        self._items.clear()
        self._sweep_at = self._MIN_SWEEP

    def __len__(self) -> int:
        return len(self._items)


@dataclass(slots=True)
class AuthorizeToken:
    value: str
    customer_id: str
    expires_at: float
    used: bool = False
    # The MFA session this token opened: a continuation of it may present the token again.
    request_id: str | None = None


@dataclass(slots=True)
class Card:
    """A LoginId: one user's saved connection at Flinks Capital."""

    login_id: str
    customer_id: str
    user: BankUser
    language: str
    saved: bool
    created_at: datetime
    is_scheduled_refresh: bool = False
    last_refresh: datetime | None = None
    # Sandbox clock time of the last Connect sign-in (a cached /Authorize may be pending after it).
    connected_at: float | None = None
    # The RequestId of live work on this card still running in the background, if any.
    job: str | None = None


class Purpose(enum.Enum):
    """Who opened an authorization: the API, the Connect page or the OAuth bank page."""

    API = "api"
    CONNECT = "connect"
    BANK = "bank"


class SessionStatus(enum.Enum):
    MFA = "mfa"
    AUTHORIZED = "authorized"
    DISPATCHED = "dispatched"  # work going on in the background: 202 until it is ready
    FAILED = "failed"  # background work that ended in an error, answered on every poll


@dataclass(slots=True)
class Background:
    """Work Flinks goes on with after a 202: ready at ``ready_at`` (sandbox clock)."""

    ready_at: float
    live: bool  # a live authorization (MFA, LastRefresh) rather than a cached one
    # Set by the control API's "fail": (HTTP status, FlinksCode) to end with instead.
    failure: tuple[int, str] | None = None


@dataclass(slots=True)
class DetailJob:
    options: DetailOptions
    polls_left: int  # 202 OPERATION_PENDING answers still to give
    delivered: bool = False  # a 200 has been served: processing is over
    # Its webhook has been sent: processing is over for Flinks too, whether or not the API
    # has served the 200 yet (a client may take the data from the webhook and never poll).
    announced: bool = False


@dataclass(slots=True)
class AuthSession:
    """A RequestId: an MFA conversation, then an authorized session for the data endpoints."""

    request_id: str
    customer_id: str
    user: BankUser
    purpose: Purpose
    language: str
    save: bool
    tag: str | None
    schedule_refresh: bool
    expires_at: float
    status: SessionStatus = SessionStatus.MFA
    card: Card | None = None
    challenge: Challenge | None = None  # the one waiting for an answer
    asked: int = 0  # challenges of the user's sequence asked so far, in this sign-in
    wrong_answers: int = 0
    rounds_left: int = 0
    detail: DetailJob | None = None
    background: Background | None = None
    failure: dict[str, Any] | None = None  # the error body of a FAILED session


@dataclass(slots=True)
class BankSession:
    """One visit to the OAuth bank login page, keyed by the id in its URL."""

    id: str
    customer_id: str
    redirect_uri: str
    state: str | None
    language: str
    tag: str | None
    expires_at: float
    request_id: str | None = None  # the MFA conversation under way, if any
    done: bool = False


@dataclass(slots=True)
class ConnectSession:
    """One Connect page visit after its authorize token was consumed."""

    id: str
    customer_id: str
    language: str
    tag: str | None
    maximum_retry: int | None
    expires_at: float
    failures: int = 0
    request_id: str | None = None
    card: Card | None = None

    @property
    def locked(self) -> bool:
        return self.maximum_retry is not None and self.failures >= self.maximum_retry


@dataclass(slots=True)
class CallRecord:
    """One request the sandbox received (control API excluded), as tests read it back."""

    seq: int
    at: float
    method: str
    path: str
    endpoint: str | None
    status: int | None = None
    customer_id: str | None = None
    fields: list[str] | None = None
    query: list[str] | None = None
    token: str | None = None
    api_key: str | None = None
    login_id: str | None = None
    request_id: str | None = None
    most_recent_cached: bool | None = None
    save: bool | None = None
    tag: str | None = None
    flinks_code: str | None = None
    response_request_id: str | None = None
    fault: str | None = None
    duration_ms: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class SandboxState:
    """All mutable state of one sandbox app."""

    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        self.customer_ids = frozenset(c.lower() for c in settings.customer_ids)
        self.redirect_uris = frozenset(settings.redirect_uris)
        self.clock = Clock()
        self.faults = FaultConfig.from_settings(settings)
        self.switches = SwitchConfig.from_settings(settings)
        self.webhook_switches = WebhookSwitchConfig.from_settings(settings)
        self.random = random.Random(settings.fault_seed)  # noqa: S311 - fault injection, not crypto
        self.calls: deque[CallRecord] = deque(maxlen=settings.call_record_limit)
        self.call_seq = 0
        self.login_namespace = uuid.uuid4()
        self.tokens: ExpiringMap[AuthorizeToken] = ExpiringMap()
        self.sessions: ExpiringMap[AuthSession] = ExpiringMap()
        self.bank_sessions: ExpiringMap[BankSession] = ExpiringMap()
        self.connect_sessions: ExpiringMap[ConnectSession] = ExpiringMap()
        self.cards: dict[str, Card] = {}

    def reset(self) -> None:
        """Forget everything and go back to the configured faults, as a fresh instance."""
        self.clock.offset = 0.0
        self.faults = FaultConfig.from_settings(self.settings)
        self.switches = SwitchConfig.from_settings(self.settings)
        self.webhook_switches = WebhookSwitchConfig.from_settings(self.settings)
        self.random.seed(self.settings.fault_seed)
        self.calls.clear()
        self.call_seq = 0
        self.tokens.clear()
        self.sessions.clear()
        self.bank_sessions.clear()
        self.connect_sessions.clear()
        self.cards.clear()

    def next_call_seq(self) -> int:
        self.call_seq += 1
        return self.call_seq

    def mint_token(self, customer_id: str) -> AuthorizeToken:
        now = self.clock.now()
        token = AuthorizeToken(
            str(uuid.uuid4()), customer_id, now + self.settings.token_ttl_seconds
        )
        self.tokens.put(token.value, token, now)
        return token

    def valid_token(self, value: str | None, customer_id: str) -> AuthorizeToken | None:
        """The token if it exists, has not expired and belongs to the customer (used or not)."""
        if not value:
            return None
        token = self.tokens.get(value.strip(), self.clock.now())
        if token is None or token.customer_id != customer_id:
            return None
        return token

    def find_card(self, login_id: str | None, customer_id: str) -> Card | None:
        """A saved card of this customer; unsaved and deleted LoginIds do not exist for callers."""
        if not login_id:
            return None
        card = self.cards.get(login_id.strip().lower())
        if card is None or not card.saved or card.customer_id != customer_id:
            return None
        return card

    def issue_card(
        self, customer_id: str, user: BankUser, language: str, *, save: bool
    ) -> tuple[Card, bool]:
        """The user's card, created when new. Returns (card, created)."""
        if self.settings.stable_login_ids:
            # Flinks ties a LoginId to institution + username + language within one instance.
            name = f"{customer_id}|FlinksCapital|{user.username.lower()}|{language}"
            login_id = str(uuid.uuid5(self.login_namespace, name))
        else:
            login_id = str(uuid.uuid4())
        card = self.cards.get(login_id)
        if card is not None:
            card.saved = card.saved or save
            return card, False
        card = Card(login_id, customer_id, user, language, save, self.clock.utcnow())
        self.cards[login_id] = card
        return card, True

    def delete_card(self, card: Card) -> None:
        del self.cards[card.login_id]
        for session in self.sessions.values():
            if session.card is card:
                self.sessions.pop(session.request_id)

    def new_id(self) -> str:
        return str(uuid.uuid4())
