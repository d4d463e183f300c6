"""Bodies of the links routes: what a browser may see of a link and its data (masked account
numbers, no holder, never a loginId), and what the host backend reads (with the loginId)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, Field, PlainSerializer, StringConstraints

from app.flows import AccountData, HostLink, LinkRecord, Transaction

LinkId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{22}$")]
AccountId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
# Money travels as a JSON number (what every client parses), computed from exact decimals.
Money = Annotated[Decimal, PlainSerializer(float, return_type=float, when_used="json")]


class LinkOut(BaseModel):
    link_id: str
    institution: str | None
    status: Literal["active"]
    created_at: datetime
    refreshed_at: datetime | None

    @classmethod
    def of(cls, link: LinkRecord) -> LinkOut:
        return cls(
            link_id=link.link_id,
            institution=link.institution,
            status="active",
            created_at=link.created_at,
            refreshed_at=link.refreshed_at,
        )


class LinksOut(BaseModel):
    links: list[LinkOut]


class BalanceOut(BaseModel):
    current: Money | None
    available: Money | None


class AccountOut(BaseModel):
    account_id: str
    name: str | None
    category: str | None
    type: str | None
    mask: str | None = Field(description="At most the last 4 digits of the account number.")
    currency: str | None
    balance: BalanceOut


class AccountsOut(BaseModel):
    accounts: list[AccountOut]
    refreshed_at: datetime

    @classmethod
    def of(cls, data: AccountData) -> AccountsOut:
        return cls(
            accounts=[
                AccountOut(
                    account_id=a.account_id,
                    name=a.name,
                    category=a.category,
                    type=a.type,
                    mask=a.mask,
                    currency=a.currency,
                    balance=BalanceOut(current=a.balance.current, available=a.balance.available),
                )
                for a in data.accounts
            ],
            refreshed_at=data.refreshed_at,
        )


class TransactionOut(BaseModel):
    account_id: str
    date: date
    description: str | None
    amount: Money | None = Field(description="Money in is positive, money out negative.")
    balance: Money | None

    @classmethod
    def of(cls, t: Transaction) -> TransactionOut:
        return cls(
            account_id=t.account_id,
            date=t.date,
            description=t.description,
            amount=t.amount,
            balance=t.balance,
        )


class TransactionsOut(BaseModel):
    transactions: list[TransactionOut]
    next_cursor: str | None = Field(
        description="Pass it as `cursor` for the next page; null on the last one."
    )


class DataPendingOut(BaseModel):
    status: Literal["pending"] = "pending"


class HostLinkOut(BaseModel):
    """The one answer that carries a loginId out of the BFF: to the host backend only."""

    link_id: str
    owner: str
    institution: str | None
    login_id: str
    created_at: datetime

    @classmethod
    def of(cls, link: HostLink) -> HostLinkOut:
        return cls(
            link_id=link.link_id,
            owner=link.owner,
            institution=link.institution,
            login_id=link.login_id,
            created_at=link.created_at,
        )


class HostLinksOut(BaseModel):
    links: list[HostLinkOut]
