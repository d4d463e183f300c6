"""The domain's records and value types: a flow as stored, its status, and the ids it carries.

Defined once here: the store reads and writes these records, the service changes them, the API
renders them, and settings validate institution ids with the same pattern.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

# The languages a flow may run in. The Flinks client has its own `FlinksLanguage` (what Flinks'
# API accepts; the client knows nothing of this package): mypy checks that this one fits in it.
Language = Literal["en", "fr"]
FlowKind = Literal["connect", "oauth"]
FlowStatus = Literal["started", "authorizing", "mfa_required", "pending", "connected", "failed"]

# A Flinks institution id, e.g. FlinksCapital. app/web/app.js mirrors it (INSTITUTION_ID).
INSTITUTION_ID_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
INSTITUTION_ID = re.compile(INSTITUTION_ID_PATTERN)
InstitutionId = Annotated[str, StringConstraints(pattern=INSTITUTION_ID_PATTERN)]


# A native app's OAuth state is bound to its flow's PKCE challenge, not to a browser session
# (the system browser does not share the app's cookies): stored under this in place of one.
NATIVE_BINDING = "\x00native"


def new_flow_id() -> str:
    return secrets.token_urlsafe(16)


def session_hash(session: str) -> str:
    """What a flow stores of its owner: never the session itself."""
    return hashlib.sha256(session.encode()).hexdigest()


class Challenge(BaseModel):
    """One MFA question of a flow waiting for answers: Flinks' type (QuestionAndAnswer,
    MultipleChoice, MultipleChoiceMultipleAnswers, ImageSelection, TextOrCall, or one not known
    here), its prompt, and the choices Flinks offered (its `Iterables`), in order."""

    model_config = ConfigDict(frozen=True)

    type: str
    prompt: str
    choices: tuple[str, ...] = ()


class FlowError(BaseModel):
    """Why a flow failed: a stable code and words for the user."""

    model_config = ConfigDict(frozen=True)

    code: str
    message: str


class FlowRecord(BaseModel):
    """A flow as stored. Secrets it needs later (MFA token, RequestId) are sealed, not plain.

    `attempt` counts the answers to this MFA step, from 1 (a wrong answer that Flinks follows
    with a new question makes it 2). `pending_since` is when Flinks first said "still working"
    (202, or a call that got no answer) for the current wait, which is followed for at most
    30 minutes. `reported`: a read told the owner that the flow connected (and its session
    was rotated then).
    """

    model_config = ConfigDict(frozen=True)

    flow_id: str
    kind: FlowKind
    session_hash: str
    status: FlowStatus = "started"
    version: int = 0
    language: Language = "en"
    institution: str | None = None
    return_url: str | None = None
    tag: str | None = None
    challenges: tuple[Challenge, ...] = ()
    attempt: int = 1
    error: FlowError | None = None
    sealed_upstream: str | None = Field(
        None, description="AES-GCM sealed continuation: Flinks' RequestId and MFA token"
    )
    created_at: datetime
    expires_at: datetime
    checked_at: datetime | None = None
    pending_since: datetime | None = None
    reported: bool = False
    # Who started the flow (a session owner, a JWT `sub` or a proxy's user): kept so that the
    # link a connected flow makes is filed under it. `session_hash` is what access checks use.
    owner: str | None = None
    link_id: str | None = None
    # A native app's flow (RFC 7636): its PKCE S256 challenge, and whether the bank's (or
    # Connect's) loginId is in, waiting for the app to redeem the handoff code with the verifier.
    code_challenge: str | None = None
    awaiting_handoff: bool = False

    @classmethod
    def new(
        cls,
        *,
        kind: FlowKind,
        session: str,
        language: Language,
        now: datetime,
        lifetime: timedelta,
        institution: str | None = None,
        return_url: str | None = None,
        tag: str | None = None,
    ) -> FlowRecord:
        """A flow just started, with a fresh id, owned by `session`."""
        return cls(
            flow_id=new_flow_id(),
            kind=kind,
            session_hash=session_hash(session),
            owner=session,
            language=language,
            institution=institution,
            return_url=return_url,
            tag=tag,
            created_at=now,
            expires_at=now + lifetime,
        )

    def owned_by(self, session: str | None) -> bool:
        return session is not None and secrets.compare_digest(
            self.session_hash, session_hash(session)
        )

    def next(self, **changes: object) -> FlowRecord:
        """The record after one transition: the changes and a bumped version."""
        return self.model_copy(update={**changes, "version": self.version + 1})


LinkStatus = Literal["linking", "active", "deleting", "deleted"]


class LinkRecord(BaseModel):
    """A bank login linked by one owner, as stored (`Store.link`). Its id is derived from the
    loginId with a keyed hash (`Store.link_id_for`), so one loginId has one record: the record
    is also the loginId's ownership claim. `linking`: a flow of `owner` presented the loginId
    and is authorizing it (a reservation that expires with the flow); `active`: connected;
    `deleting`: DeleteCard is being called; `deleted`: a tombstone that makes DELETE idempotent.
    The loginId itself is sealed (`sealed_login_id`), never plain."""

    model_config = ConfigDict(frozen=True)

    link_id: str
    owner: str
    status: LinkStatus
    institution: str | None = None
    created_at: datetime
    refreshed_at: datetime | None = None
    sealed_login_id: str | None = Field(None, repr=False)
    flow_id: str | None = None

    def owned_by(self, owner: str | None) -> bool:
        return owner is not None and secrets.compare_digest(
            self.owner.encode("utf-8", "surrogatepass"), owner.encode("utf-8", "surrogatepass")
        )


EventType = Literal["link.connected", "link.failed", "link.deleted", "accounts.ready"]


class OutboxEvent(BaseModel):
    """An event for the host backend, written by the store in the same atomic step as the
    change it reports (app/flows/events.py). `event_id` is its Standard Webhooks `webhook-id`,
    the same on every attempt; `order` names the sequence it is delivered in (a link's id, or a
    flow's for a flow that failed before it made one); `body` is the JSON sent."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    order: str
    body: str
    created_ms: int
