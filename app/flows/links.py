"""Links: the bank logins an owner connected, their account data, and unlinking.

A loginId belongs to the first owner whose flow presents it: the link's id is a keyed hash of
the loginId (`Store.link_id_for`), so its record is also the loginId's ownership claim, taken
atomically (`reserve`) before any /Authorize. A connected flow files the link (`file`) and keeps
Flinks' RequestId for the first data read.

Account data follows Flinks' documented order: GetAccountsDetail with the RequestId of a
/Authorize (the connecting one while it lives, else a cached /Authorize), and on 202 the Async
endpoint, asked at most every `poll_gap` (10 s) across replicas. The result is cached, sealed,
for `data_ttl`, holding only what a browser may see: masked account numbers, no holder.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, ValidationError

from app.clock import Clock
from app.errors import (
    Conflict,
    LinkNotFound,
    LoginOwnedElsewhere,
    UpstreamRejected,
    ValidationFailed,
)
from app.flinks import (
    AccountsPending,
    AccountsReady,
    Connected,
    FlinksAccount,
    FlinksClient,
    FlinksError,
    FlinksRejected,
    MfaRequired,
    Pending,
)
from app.flows.events import Events
from app.flows.records import LinkRecord
from app.flows.runner import app_error

if TYPE_CHECKING:
    from app.store import Store  # a type only, as in service.py

log = logging.getLogger("app.flows")

MAX_DAYS = 90
PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


@dataclass(frozen=True, slots=True)
class LinkPolicy:
    """`link_ttl` (BFF_LINK_TTL) and `data_ttl` (BFF_DATA_TTL) in seconds. `poll_gap`: Flinks
    asks for its Async endpoints to be polled at most every 10 s. A RequestId lives 8 minutes
    of inactivity, a data job 30 minutes (Flinks' polling limit). A tombstone keeps DELETE
    idempotent for a day; a `deleting` claim older than `stale_delete` may be taken again."""

    link_ttl: int = 90 * 86400
    data_ttl: int = 900
    poll_gap: timedelta = timedelta(seconds=10)
    request_id_ttl: int = 8 * 60
    job_ttl: int = 30 * 60
    tombstone_ttl: int = 86400
    stale_delete: timedelta = timedelta(seconds=60)


class Balance(BaseModel):
    model_config = ConfigDict(frozen=True)

    current: Decimal | None
    available: Decimal | None


class Account(BaseModel):
    """One account as a browser may see it: `mask` is at most the last 4 digits."""

    model_config = ConfigDict(frozen=True)

    account_id: str
    name: str | None
    category: str | None
    type: str | None
    mask: str | None
    currency: str | None
    balance: Balance


class Transaction(BaseModel):
    """`amount`: credit minus debit (money in is positive)."""

    model_config = ConfigDict(frozen=True)

    account_id: str
    date: date
    description: str | None
    amount: Decimal | None
    balance: Decimal | None


class AccountData(BaseModel):
    """What is cached of a link's data: transactions newest first."""

    model_config = ConfigDict(frozen=True)

    refreshed_at: datetime
    accounts: tuple[Account, ...]
    transactions: tuple[Transaction, ...]


@dataclass(frozen=True, slots=True)
class DataPending:
    """Flinks is preparing the data: ask again after `retry_after` seconds."""

    retry_after: int


@dataclass(frozen=True, slots=True)
class TransactionsPage:
    transactions: tuple[Transaction, ...]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class HostLink:
    """A link as the host backend reads it (the internal API): with its loginId."""

    link_id: str
    owner: str
    institution: str | None
    login_id: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class _Job:
    """A RequestId whose data is asked for: `fresh` (GetAccountsDetail not yet called) or
    `async` (Flinks answered 202: poll GetAccountsDetailAsync)."""

    request_id: str
    stage: str


class Links:
    def __init__(
        self,
        store: Store,
        flinks: Callable[[], FlinksClient],
        policy: LinkPolicy,
        clock: Clock,
        events: Events | None = None,
    ) -> None:
        self.store = store
        self._flinks = flinks
        self.policy = policy
        self._clock = clock
        self.events = events or Events(clock, enabled=False)

    # -- ownership ---------------------------------------------------------------------------

    async def reserve(self, *, owner: str, login_id: str, flow_id: str) -> None:
        """Claims the loginId for `owner` (kept while the flow runs, made permanent when it
        connects), or raises LoginOwnedElsewhere: another owner linked or is linking it."""
        link_id = self.store.link_id_for(login_id)
        claim = LinkRecord(
            link_id=link_id,
            owner=owner,
            status="linking",
            created_at=self._clock.now(),
            flow_id=flow_id,
        )
        written = await self.store.write_link(
            claim, when=("absent", "deleted"), ttl=self.store.flow_ttl
        )
        if written == "elsewhere":
            # Neither the loginId nor either owner: the flow names the attempt.
            log.warning("security.login_owned_elsewhere", extra={"flow_id": flow_id})
            raise LoginOwnedElsewhere

    async def file(
        self,
        *,
        owner: str,
        login_id: str,
        institution: str | None,
        flow_id: str,
        request_id: str,
        tag: str | None = None,
    ) -> LinkRecord | None:
        """The link a connected flow makes (or refreshes), or None if the loginId turned out
        to be another owner's (its claim lapsed and another took it)."""
        link_id = self.store.link_id_for(login_id)
        now = self._clock.now()
        link = LinkRecord(
            link_id=link_id,
            owner=owner,
            status="active",
            institution=institution,
            created_at=now,  # an active record of the owner's keeps its own (Store.file_link)
            refreshed_at=now,
            sealed_login_id=self.store.seal_login(login_id, link_id),
            flow_id=flow_id,
        )
        event = self.events.link_connected(link, tag=tag)
        written = await self.store.file_link(
            link,
            when=("absent", "deleted", "linking", "active"),
            ttl=self.policy.link_ttl,
            event=event,
            job=json.dumps({"request_id": request_id, "stage": "fresh"}),
            job_ttl=self.policy.request_id_ttl,
        )
        if written == "elsewhere":
            log.warning("security.login_owned_elsewhere", extra={"flow_id": flow_id})
            return None
        if written == "written":
            self.events.written(event, link_id)
        log.info("link.filed", extra={"flow_id": flow_id, "link_id": link_id})
        return link

    # -- reading and deleting ----------------------------------------------------------------

    async def owned(self, owner: str) -> list[LinkRecord]:
        links = await self.store.owner_links(owner)
        mine = [link for link in links if link.status == "active" and link.owned_by(owner)]
        return sorted(mine, key=lambda link: (link.created_at, link.link_id), reverse=True)

    async def get(self, owner: str | None, link_id: str) -> LinkRecord:
        link = await self.store.get_link(link_id)
        if link is None or link.status != "active" or not link.owned_by(owner):
            raise LinkNotFound
        return link

    async def delete(self, owner: str | None, link_id: str) -> None:
        """Calls Flinks' DeleteCard once and forgets the link; done again, nothing happens."""
        link = await self.store.get_link(link_id)
        if link is None or not link.owned_by(owner) or link.status == "linking":
            raise LinkNotFound
        if link.status == "deleted":
            return
        now = self._clock.now()
        if link.status == "deleting":
            since = link.refreshed_at or link.created_at
            if now - since < self.policy.stale_delete:
                raise Conflict("This link is being deleted.", headers={"Retry-After": "2"})
        claimed = link.model_copy(update={"status": "deleting", "refreshed_at": now})
        if await self.store.write_link(claimed, when=(link.status,), ttl=None) != "written":
            raise Conflict("This link changed while it was being deleted; try again.")
        login_id = self.store.open_login(link)
        try:
            if login_id is not None:
                await self._flinks().delete_card(login_id=login_id)
        except FlinksRejected as exc:
            if exc.flinks_code != "INVALID_LOGIN":  # INVALID_LOGIN: Flinks has it no more
                await self._restore(link)
                if exc.flinks_code == "CARD_IN_USE":
                    raise Conflict(
                        "Flinks is still processing this account; try again shortly.",
                        headers={"Retry-After": "10"},
                    ) from exc
                raise app_error(exc) from exc
        except FlinksError as exc:
            await self._restore(link)
            raise app_error(exc) from exc
        tombstone = link.model_copy(
            update={"status": "deleted", "sealed_login_id": None, "refreshed_at": now}
        )
        event = self.events.link_deleted(link)
        deleted = await self.store.write_link(
            tombstone, when=("deleting",), ttl=self.policy.tombstone_ttl, event=event
        )
        if deleted == "written":
            self.events.written(event, link_id)
        await self.store.remove_owner_link(link.owner, link_id)
        await self.store.drop_data(link_id)
        log.info("link.deleted", extra={"link_id": link_id})

    async def _restore(self, link: LinkRecord) -> None:
        await self.store.write_link(link, when=("deleting",), ttl=None)

    # -- the host backend --------------------------------------------------------------------

    async def host_link(self, link_id: str) -> HostLink:
        link = await self.store.get_link(link_id)
        if link is None or link.status != "active":
            raise LinkNotFound
        return self._host(link)

    async def host_links(self, owner: str) -> list[HostLink]:
        return [self._host(link) for link in await self.owned(owner)]

    def _host(self, link: LinkRecord) -> HostLink:
        login_id = self.store.open_login(link)
        if login_id is None:  # sealed under another key (a development restart)
            raise LinkNotFound
        return HostLink(link.link_id, link.owner, link.institution, login_id, link.created_at)

    # -- account data ------------------------------------------------------------------------

    async def accounts(self, owner: str | None, link_id: str) -> AccountData | DataPending:
        return await self._data(await self.get(owner, link_id))

    async def transactions(
        self,
        owner: str | None,
        link_id: str,
        *,
        account_id: str | None,
        days: int,
        cursor: str | None,
        limit: int = PAGE_SIZE,
    ) -> TransactionsPage | DataPending:
        if not 1 <= days <= MAX_DAYS:
            raise ValidationFailed(f"days must be from 1 to {MAX_DAYS}.")
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ValidationFailed(f"limit must be from 1 to {MAX_PAGE_SIZE}.")
        data = await self._data(await self.get(owner, link_id))
        if isinstance(data, DataPending):
            return data
        if account_id is not None and all(a.account_id != account_id for a in data.accounts):
            raise ValidationFailed("account_id is not one of this link's accounts.")
        since = data.refreshed_at.date() - timedelta(days=days)
        chosen = [
            t
            for t in data.transactions
            if (account_id is None or t.account_id == account_id) and t.date > since
        ]
        query = _query_mark(data.refreshed_at, account_id, days)
        start = _read_cursor(cursor, query) if cursor is not None else 0
        page = tuple(chosen[start : start + limit])
        end = start + len(page)
        return TransactionsPage(page, _cursor(end, query) if end < len(chosen) else None)

    async def _data(self, link: LinkRecord) -> AccountData | DataPending:
        cached = await self.store.get_data(link.link_id)
        if cached is not None:
            try:
                return AccountData.model_validate_json(cached)
            except ValidationError:
                log.warning("link.data_unreadable", extra={"link_id": link.link_id})
        gap_ms = int(self.policy.poll_gap.total_seconds() * 1000)
        wait_ms = await self.store.data_poll_wait(link.link_id, gap_ms)
        if wait_ms:
            return DataPending(retry_after=max(1, math.ceil(wait_ms / 1000)))
        return await self._ask_flinks(link)

    async def _ask_flinks(self, link: LinkRecord) -> AccountData | DataPending:
        """One turn with Flinks for this link's data (the caller holds the poll gap)."""
        flinks = self._flinks()
        job = await self._job(link.link_id)
        try:
            if job is not None:
                try:
                    if job.stage == "fresh":
                        result = await flinks.accounts_detail(request_id=job.request_id)
                    else:
                        result = await flinks.accounts_detail_async(request_id=job.request_id)
                except FlinksRejected as exc:
                    if exc.flinks_code != "SESSION_NONEXISTENT":
                        raise
                    job = None  # the RequestId expired: open a new session below
            if job is None:
                request_id = await self._cached_session(flinks, link)
                if request_id is None:
                    return self._pending()
                result = await flinks.accounts_detail(request_id=request_id)
        except FlinksError as exc:
            raise app_error(exc) from exc
        if isinstance(result, AccountsPending):
            pending = json.dumps({"request_id": result.request_id, "stage": "async"})
            await self.store.put_data_job(link.link_id, pending, self.policy.job_ttl)
            return self._pending()
        assert isinstance(result, AccountsReady)  # noqa: S101 - AccountsOutcome has two kinds
        return await self.accept_data(link, result)

    async def accept_data(self, link: LinkRecord, result: AccountsReady) -> AccountData:
        """Flinks' accounts for the link, however they came (an answer, a webhook): cached, as
        the browser may see them, for `data_ttl`; any job for them is done."""
        data = _account_data(result, self._clock.now())
        event = self.events.accounts_ready(
            link, accounts=len(data.accounts), refreshed_at=data.refreshed_at
        )
        await self.store.put_data(
            link.link_id, data.model_dump_json(), self.policy.data_ttl, event=event
        )
        self.events.written(event, link.link_id)
        refreshed = link.model_copy(update={"refreshed_at": data.refreshed_at})
        await self.store.write_link(refreshed, when=("active",), ttl=None)
        log.info("link.data_ready", extra={"link_id": link.link_id})
        return data

    async def _cached_session(self, flinks: FlinksClient, link: LinkRecord) -> str | None:
        """A RequestId from a cached /Authorize, or None while Flinks still works on the login
        (202 right after a Connect session)."""
        login_id = self.store.open_login(link)
        if login_id is None:
            raise LinkNotFound
        outcome = await flinks.authorize_cached(login_id=login_id)
        if isinstance(outcome, Connected):
            return outcome.request_id
        if isinstance(outcome, Pending):
            return None
        if isinstance(outcome, MfaRequired):
            raise UpstreamRejected("Flinks asks for the bank sign-in again; link the account anew.")
        raise UpstreamRejected(outcome.outcome.message, flinks_code=outcome.flinks_code)

    async def _job(self, link_id: str) -> _Job | None:
        plain = await self.store.get_data_job(link_id)
        if plain is None:
            return None
        try:
            raw = json.loads(plain)
            return _Job(str(raw["request_id"]), str(raw["stage"]))
        except (ValueError, KeyError, TypeError):
            return None

    def _pending(self) -> DataPending:
        return DataPending(retry_after=math.ceil(self.policy.poll_gap.total_seconds()))


_DIGITS = re.compile(r"\d")


def _mask(account: FlinksAccount) -> str | None:
    for source in (account.last_four, account.account_number):
        digits = "".join(_DIGITS.findall(source or ""))
        if digits:
            return digits[-4:]
    return None


def _account_data(result: AccountsReady, now: datetime) -> AccountData:
    accounts = tuple(
        Account(
            account_id=a.account_id,
            name=a.title or a.type,
            category=a.category,
            type=a.type,
            mask=_mask(a),
            currency=a.currency,
            balance=Balance(current=a.balance.current, available=a.balance.available),
        )
        for a in result.accounts
    )
    transactions = [
        Transaction(
            account_id=a.account_id,
            date=t.date,
            description=t.description,
            amount=None
            if t.credit is None and t.debit is None
            else (t.credit or Decimal(0)) - (t.debit or Decimal(0)),
            balance=t.balance,
        )
        for a in result.accounts
        for t in a.transactions
    ]
    transactions.sort(key=lambda t: t.date, reverse=True)  # stable: Flinks' order within a day
    return AccountData(refreshed_at=now, accounts=accounts, transactions=tuple(transactions))


def _query_mark(refreshed_at: datetime, account_id: str | None, days: int) -> str:
    """Ties a cursor to the query and the data it paged through."""
    seed = f"{refreshed_at.isoformat()}|{account_id or ''}|{days}"
    return hashlib.sha256(seed.encode()).hexdigest()[:16]


def _cursor(offset: int, query: str) -> str:
    return base64.urlsafe_b64encode(f"{offset}.{query}".encode()).decode().rstrip("=")


def _read_cursor(cursor: str, query: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        offset_text, _, mark = raw.partition(".")
        offset = int(offset_text)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValidationFailed("cursor is not one this service gave.") from None
    if mark != query or offset < 0:
        raise ValidationFailed(
            "cursor belongs to another query or to data that has been refreshed; start again "
            "without it."
        )
    return offset
