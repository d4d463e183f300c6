"""Deterministic Flinks Capital account data: the same accounts, amounts and ids every time.

Transactions are kept as "days ago" offsets and dated against the sandbox clock when served, so
the history always ends today. Account and transaction ids derive from the LoginId.
"""

from __future__ import annotations

import random
import re
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from typing import Any

from app.sandbox.users import INSTITUTION, INSTITUTION_ID

JSON = dict[str, Any]
HISTORY_DAYS = 365
INSTITUTION_NUMBER = "777"
_IDS = uuid.UUID("6c4f3b0e-7a51-4f8e-9a55-3f1f2b0c9d11")

HOLDER: JSON = {
    "Name": "Alex Tremblay",
    "Address": {
        "CivicAddress": "1250 Rue Sainte-Catherine O",
        "City": "Montreal",
        "Province": "QC",
        "PostalCode": "H3G 1P1",
        "POBox": None,
        "Country": "CA",
    },
    "Email": "alex.tremblay@example.com",
    "PhoneNumber": "5145550142",
}


@dataclass(frozen=True, slots=True)
class Txn:
    days_ago: int
    description: str
    debit: float | None
    credit: float | None


@dataclass(frozen=True, slots=True)
class AccountTemplate:
    key: str
    title: str
    type: str
    category: str
    currency: str
    account_number: str
    transit_number: str
    last_four: str | None
    current: float
    limit: float | None
    overdraft_limit: float
    eft_ratio: float
    etransfer_ratio: float
    owed: bool  # credit products: Current is what is owed and purchases raise it


@dataclass(frozen=True, slots=True)
class DetailOptions:
    with_transactions: bool = True
    with_balance: bool = True
    with_account_identity: bool = True
    days: int = 90
    date_from: date | None = None
    date_to: date | None = None
    accounts_filter: frozenset[str] | None = None


ACCOUNTS: tuple[AccountTemplate, ...] = (
    AccountTemplate(
        "chequing", "Chequing CAD", "Chequing", "Operations", "CAD", "1002347", "10201",
        None, 5105.52, None, 500.0, 1.0, 1.0, owed=False,
    ),
    AccountTemplate(
        "savings", "High Interest Savings", "Savings", "Operations", "CAD", "2009911", "10201",
        None, 12480.37, None, 0.0, 1.0, 0.5, owed=False,
    ),
    AccountTemplate(
        "usd", "US Dollar Chequing", "Chequing", "Operations", "USD", "3004518", "10201",
        None, 842.16, None, 0.0, 0.0, 0.0, owed=False,
    ),
    AccountTemplate(
        "visa", "Visa Infinite", "CreditCard", "Credits", "CAD", "************4242", "",
        "4242", 1284.77, 10000.0, 0.0, 0.0, 0.0, owed=True,
    ),
    AccountTemplate(
        "tfsa", "TFSA", "TFSA", "Products", "CAD", "5001234", "10201",
        None, 23750.0, None, 0.0, 0.0, 0.0, owed=False,
    ),
)  # fmt: skip


def _every(step: int, first: int) -> range:
    return range(first, HISTORY_DAYS, step)


# The Visa is paid in full from chequing every 30 days, on the same day in both accounts.
_CARD_PAYMENT_DAYS = range(10, HISTORY_DAYS, 30)


def _amount(rng: random.Random, low: float, high: float) -> float:
    return round(rng.uniform(low, high), 2)


@cache
def _card_purchases() -> tuple[Txn, ...]:
    """The Visa's purchases: most days one, some days two (memoised: same data every call)."""
    rng = random.Random("flinks-sandbox:visa")  # noqa: S311 - fixture data, not crypto
    shops = (
        ("SAQ #23044", 14.0, 65.0),
        ("UBER* TRIP", 9.0, 34.0),
        ("STM - OPUS", 3.75, 3.75),
        ("RONA #61016", 12.0, 95.0),
        ("COSTCO WHOLESALE #503", 45.0, 140.0),
        ("A&W #4411", 8.0, 19.0),
        ("AMAZON.CA", 15.0, 80.0),
        ("CINEPLEX ODEON", 14.0, 36.0),
        ("SHELL C02345", 35.0, 70.0),
    )
    purchases: list[Txn] = []
    for day in range(HISTORY_DAYS):
        for _ in range(rng.choice((0, 1, 1, 1, 2))):
            name, low, high = rng.choice(shops)
            purchases.append(Txn(day, name, _amount(rng, low, high), None))
    return tuple(purchases)


@cache
def _card_payments() -> dict[int, float]:
    """Each payment day's amount: the purchases of the 30 days before it (the statement)."""
    return {
        day: round(
            sum(t.debit or 0.0 for t in _card_purchases() if day < t.days_ago <= day + 30), 2
        )
        for day in _CARD_PAYMENT_DAYS
    }


@cache
def history(key: str) -> tuple[Txn, ...]:
    """The account's last 365 days, newest first (pure and memoised: same data every call).

    A household's few hundred transactions a quarter: pay, rent, bills, groceries and small
    spending on chequing, daily card purchases paid in full monthly. Income and spending
    roughly balance, so no deposit account goes below zero and the card never owes less than
    nothing over the year (tests/sandbox/test_data.py checks it).
    """
    rng = random.Random(f"flinks-sandbox:{key}")  # noqa: S311 - fixture data, not crypto
    txns: list[Txn] = []

    def add(
        days_ago: int, text: str, debit: float | None = None, credit: float | None = None
    ) -> None:
        txns.append(Txn(days_ago, text, debit, credit))

    if key == "chequing":
        for d in _every(14, 3):
            add(d, "PAYROLL DEPOSIT - NORTHWIND TRADERS", credit=2450.00)
        for d in _every(30, 1):
            add(d, "E-TRANSFER SENT - RENT", debit=1795.00)
            add(d + 2, "BELL CANADA", debit=95.40)
            add(d + 4, "SPOTIFY P0A1B2C3", debit=11.49)
            add(d + 5, "NETFLIX.COM", debit=16.99)
            add(d + 6, "DESJARDINS ASSURANCES", debit=142.50)
            add(d + 7, "TRANSFER TO SAVINGS", debit=300.00)
            add(d + 8, "TOYOTA CREDIT CANADA", debit=412.37)
        for d in _every(90, 15):
            add(d, "TRANSFER TO TFSA", debit=500.00)
        for d, paid in _card_payments().items():
            add(d, "PAYMENT - VISA INFINITE", debit=paid)
        for d in _every(60, 12):
            add(d, "HYDRO-QUEBEC", debit=_amount(rng, 80, 145))
        grocers = ("METRO #123 MONTREAL", "IGA #8123", "PROVIGO LE MARCHE")
        for d in _every(7, 2):
            add(d, rng.choice(grocers), debit=_amount(rng, 60, 190))
        for d in _every(2, 1):
            add(d, "TIM HORTONS #2531", debit=_amount(rng, 2.5, 9.5))
        for d in _every(6, 4):
            add(d, "DOLLARAMA #1150", debit=_amount(rng, 4, 30))
        for d in _every(10, 5):
            add(d, "PHARMAPRIX #0212", debit=_amount(rng, 9, 55))
        for d in _every(9, 6):
            add(d, "ATM WITHDRAWAL - BANK BRANCH", debit=float(rng.choice((40, 60, 80, 100))))
        for d in _every(7, 5):
            add(d, "RESTAURANT LE PETIT ALEP", debit=_amount(rng, 18, 60))
        for d in _every(15, 9):
            add(d, "E-TRANSFER SENT - J. GAGNON", debit=float(rng.choice((20, 25, 40, 50))))
        for d in _every(23, 11):
            add(d, "E-TRANSFER RECEIVED - M. ROY", credit=float(rng.choice((30, 45, 60, 120))))
    elif key == "savings":
        for d in _every(30, 8):
            add(d, "TRANSFER FROM CHEQUING", credit=300.00)
        for d in _every(30, 0):
            add(d, "INTEREST", credit=_amount(rng, 18, 26))
    elif key == "usd":
        for d in _every(10, 6):
            add(d, "AMAZON.COM*US", debit=_amount(rng, 12, 60))
        for d in _every(90, 20):
            add(d, "TRANSFER FROM CHEQUING CAD", credit=250.00)
    elif key == "visa":
        txns.extend(_card_purchases())
        for d, paid in _card_payments().items():
            add(d, "PAYMENT - THANK YOU", credit=paid)
    elif key == "tfsa":
        for d in _every(90, 15):
            add(d, "CONTRIBUTION", credit=500.00)
    txns.sort(key=lambda t: (t.days_ago, t.description))
    return tuple(txns)


def account_id(login_id: str, template: AccountTemplate) -> str:
    return str(uuid.uuid5(_IDS, f"{login_id}|{template.key}"))


def _balance(template: AccountTemplate, with_balance: bool) -> JSON:
    if not with_balance:
        return {"Available": None, "Current": None, "Limit": None}
    if template.owed:
        limit = template.limit or 0.0
        return {
            "Available": round(limit - template.current, 2),
            "Current": template.current,
            "Limit": limit,
        }
    available = round(template.current + template.overdraft_limit, 2)
    return {"Available": available, "Current": template.current, "Limit": template.limit}


def _summary_account(login_id: str, template: AccountTemplate, with_balance: bool = True) -> JSON:
    return {
        "EftEligibleRatio": template.eft_ratio,
        "ETransferEligibleRatio": template.etransfer_ratio,
        "Title": template.title,
        "AccountNumber": template.account_number,
        "LastFourDigits": template.last_four,
        "Balance": _balance(template, with_balance),
        "Category": template.category,
        "Type": template.type,
        "Currency": template.currency,
        "Holder": HOLDER,
        "AccountType": "Personal",
        "Id": account_id(login_id, template),
    }


def _transactions(
    acct_id: str, template: AccountTemplate, today: date, opts: DetailOptions
) -> list[JSON]:
    namespace = uuid.UUID(acct_id)
    balance = template.current
    oldest = today - timedelta(days=opts.days - 1)
    first = max(oldest, opts.date_from) if opts.date_from else oldest
    last = min(today, opts.date_to) if opts.date_to else today
    out: list[JSON] = []
    for index, txn in enumerate(history(template.key)):
        when = today - timedelta(days=txn.days_ago)
        if first <= when <= last:
            out.append(
                {
                    "Date": when.isoformat(),
                    "Code": None,
                    "Description": txn.description,
                    "Debit": txn.debit,
                    "Credit": txn.credit,
                    "Balance": round(balance, 2),
                    "Id": str(uuid.uuid5(namespace, str(index))),
                }
            )
        change = (txn.credit or 0.0) - (txn.debit or 0.0)
        balance = balance + change if template.owed else balance - change
    return out


def accounts_summary(login_id: str) -> list[JSON]:
    return [_summary_account(login_id, template) for template in ACCOUNTS]


def accounts_detail(login_id: str, today: date, opts: DetailOptions) -> list[JSON]:
    accounts: list[JSON] = []
    for template in ACCOUNTS:
        acct_id = account_id(login_id, template)
        if opts.accounts_filter is not None and acct_id not in opts.accounts_filter:
            continue
        summary = _summary_account(login_id, template, opts.with_balance)
        identity = opts.with_account_identity
        account: JSON = {
            "Transactions": (
                _transactions(acct_id, template, today, opts) if opts.with_transactions else []
            ),
            "TransitNumber": (template.transit_number or None) if identity else None,
            "InstitutionNumber": INSTITUTION_NUMBER if identity else None,
            "OverdraftLimit": template.overdraft_limit,
        }
        account.update(summary)
        del account["EftEligibleRatio"], account["ETransferEligibleRatio"]
        accounts.append(account)
    return accounts


def envelope(accounts: list[JSON], login: JSON, request_id: str, tag: str | None) -> JSON:
    return {
        "HttpStatusCode": 200,
        "Accounts": accounts,
        "Links": [],
        "Tag": tag,
        "InstitutionName": INSTITUTION,
        "Login": login,
        "InstitutionId": INSTITUTION_ID,
        "Institution": INSTITUTION,
        "RequestId": request_id,
    }


_DAYS = re.compile(r"days(\d+)", re.IGNORECASE)


def parse_days(value: str | None) -> int:
    """``Days90`` (default) or ``Days365``; other ``DaysN`` values are clamped to the history."""
    match = _DAYS.fullmatch(value.strip()) if value else None
    return min(max(int(match.group(1)), 1), HISTORY_DAYS) if match else 90


def parse_date(value: str | None) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value.strip()[:10])
    except ValueError:
        return None
