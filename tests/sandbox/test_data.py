"""GetAccountsSummary, GetAccountsDetail (202 then Async 200), x-api-key, fixture data (its
volume and plausibility), DeleteCard once a detail request has expired."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import httpx
import pytest

from app.sandbox.users import USERS, Behaviour
from tests.sandbox.conftest import clean_settings
from tests.sandbox.flinks import SandboxApi
from tests.sandbox.server import running_sandbox

ACCOUNT_KEYS = {
    "Title",
    "AccountNumber",
    "LastFourDigits",
    "Balance",
    "Category",
    "Type",
    "Currency",
    "Holder",
    "AccountType",
    "Id",
}


def _detail(flinks: SandboxApi, request_id: str, **options: Any) -> dict[str, Any]:
    first = flinks.data("GetAccountsDetail", {"RequestId": request_id, **options})
    assert first.status_code == 202, first.text
    done = flinks.get(f"GetAccountsDetailAsync/{request_id}")
    assert done.status_code == 200, done.text
    body: dict[str, Any] = done.json()
    return body


def test_summary_lists_the_accounts(flinks: SandboxApi) -> None:
    session = flinks.connect()

    response = flinks.data("GetAccountsSummary", {"RequestId": session["RequestId"]})

    assert response.status_code == 200
    body = response.json()
    assert body["HttpStatusCode"] == 200
    assert body["RequestId"] == session["RequestId"]
    assert body["Login"]["Id"] == session["Login"]["Id"]
    assert body["InstitutionId"] == 14
    accounts = body["Accounts"]
    assert [a["Type"] for a in accounts] == [
        "Chequing",
        "Savings",
        "Chequing",
        "CreditCard",
        "TFSA",
    ]
    for account in accounts:
        assert ACCOUNT_KEYS | {"EftEligibleRatio", "ETransferEligibleRatio"} == set(account)
        assert set(account["Balance"]) == {"Available", "Current", "Limit"}
        assert account["Holder"]["Address"]["Country"] == "CA"
        assert account["AccountType"] == "Personal"
        assert 0 <= account["EftEligibleRatio"] <= 1


def test_summary_async_answers_the_same(flinks: SandboxApi) -> None:
    session = flinks.connect()

    post = flinks.data("GetAccountsSummary", {"RequestId": session["RequestId"]}).json()
    get = flinks.get(f"GetAccountsSummaryAsync/{session['RequestId']}").json()

    assert post == get


def test_detail_is_pending_first_then_async_answers(flinks: SandboxApi) -> None:
    session = flinks.connect()

    first = flinks.data("GetAccountsDetail", {"RequestId": session["RequestId"]})
    second = flinks.get(f"GetAccountsDetailAsync/{session['RequestId']}")

    assert first.status_code == 202
    assert first.json()["FlinksCode"] == "OPERATION_PENDING"
    assert first.json()["Message"] == "Your operation is still processing."
    assert first.json()["RequestId"] == session["RequestId"]
    assert second.status_code == 200
    chequing = second.json()["Accounts"][0]
    assert ACCOUNT_KEYS | {
        "Transactions",
        "TransitNumber",
        "InstitutionNumber",
        "OverdraftLimit",
    } == set(chequing)
    assert chequing["InstitutionNumber"] == "777"
    assert chequing["Transactions"]


@pytest.mark.parametrize("polls", [0, 3])
def test_the_number_of_pending_answers_is_configurable(http: httpx.Client, polls: int) -> None:
    with running_sandbox(clean_settings(detail_pending_polls=polls)) as sandbox:
        client = SandboxApi(sandbox, http)
        request_id = client.connect()["RequestId"]

        statuses = [client.data("GetAccountsDetail", {"RequestId": request_id}).status_code]
        statuses += [
            client.get(f"GetAccountsDetailAsync/{request_id}").status_code for _ in range(polls)
        ]

        assert statuses == [202] * polls + [200]


def test_transactions_are_consistent_and_deterministic(flinks: SandboxApi) -> None:
    session = flinks.connect()

    first = _detail(flinks, session["RequestId"], DaysOfTransactions="Days365")
    second = _detail(flinks, flinks.connect()["RequestId"], DaysOfTransactions="Days365")

    assert first["Accounts"] == second["Accounts"]
    today = date.today()
    for account in first["Accounts"]:
        txns = account["Transactions"]
        assert txns == sorted(txns, key=lambda t: t["Date"], reverse=True)
        assert len({t["Id"] for t in txns}) == len(txns)
        if not txns:
            continue
        assert txns[0]["Balance"] == account["Balance"]["Current"]
        assert date.fromisoformat(txns[-1]["Date"]) >= today - timedelta(days=366)
        owed = account["Type"] == "CreditCard"
        for newer, older in zip(txns, txns[1:], strict=False):
            change = (newer["Credit"] or 0) - (newer["Debit"] or 0)
            expected = newer["Balance"] + change if owed else newer["Balance"] - change
            assert older["Balance"] == pytest.approx(expected, abs=0.011)


def test_days_of_transactions_and_filters(flinks: SandboxApi) -> None:
    request_id = flinks.connect()["RequestId"]
    default = _detail(flinks, request_id)
    chequing_id = default["Accounts"][0]["Id"]
    year = flinks.data(
        "GetAccountsDetail",
        {"RequestId": request_id, "DaysOfTransactions": "Days365", "AccountsFilter": [chequing_id]},
    ).json()
    bare = flinks.data(
        "GetAccountsDetail",
        {
            "RequestId": request_id,
            "WithTransactions": False,
            "WithAccountIdentity": False,
            "WithBalance": False,
        },
    ).json()

    oldest = min(date.fromisoformat(t["Date"]) for t in default["Accounts"][0]["Transactions"])
    assert oldest >= date.today() - timedelta(days=90)
    assert [a["Id"] for a in year["Accounts"]] == [chequing_id]
    assert len(year["Accounts"][0]["Transactions"]) > len(default["Accounts"][0]["Transactions"])
    assert all(a["Transactions"] == [] for a in bare["Accounts"])
    assert all(a["TransitNumber"] is None for a in bare["Accounts"])
    assert all(a["Balance"]["Current"] is None for a in bare["Accounts"])


def test_date_range(flinks: SandboxApi) -> None:
    today = date.today()
    start, end = today - timedelta(days=40), today - timedelta(days=20)
    body = _detail(
        flinks,
        flinks.connect()["RequestId"],
        DateFrom=start.isoformat(),
        DateTo=end.isoformat(),
        DaysOfTransactions="Days365",
    )

    dates = {date.fromisoformat(t["Date"]) for a in body["Accounts"] for t in a["Transactions"]}
    assert dates
    assert min(dates) >= start
    assert max(dates) <= end


@pytest.mark.parametrize("endpoint", ["GetAccountsSummary", "GetAccountsDetail"])
def test_unknown_request_id_is_session_nonexistent(flinks: SandboxApi, endpoint: str) -> None:
    for body in ({"RequestId": "9022abc2-8a2e-4b06-a06e-c3e5449c4d10"}, {}):
        response = flinks.data(endpoint, body)
        assert response.status_code == 400
        assert response.json()["FlinksCode"] == "SESSION_NONEXISTENT"
    async_get = flinks.get("GetAccountsDetailAsync/9022abc2-8a2e-4b06-a06e-c3e5449c4d10")
    assert async_get.json()["FlinksCode"] == "SESSION_NONEXISTENT"


def test_request_ids_expire_after_30_minutes(flinks: SandboxApi) -> None:
    request_id = flinks.connect()["RequestId"]
    flinks.control("POST", "clock", {"advance_seconds": 1801})

    response = flinks.data("GetAccountsSummary", {"RequestId": request_id})

    assert response.json()["FlinksCode"] == "SESSION_NONEXISTENT"


def test_data_before_mfa_is_answered_is_unauthorized(flinks: SandboxApi) -> None:
    challenge = flinks.live("Greatday").json()

    response = flinks.data("GetAccountsSummary", {"RequestId": challenge["RequestId"]})

    assert response.status_code == 401
    assert response.json()["FlinksCode"] == "UNAUTHORIZED"


def test_the_api_key_is_checked(flinks: SandboxApi) -> None:
    request_id = flinks.connect()["RequestId"]

    missing = flinks.post("GetAccountsSummary", {"RequestId": request_id})
    wrong = flinks.data("GetAccountsSummary", {"RequestId": request_id}, api_key="nope")

    for response in (missing, wrong):
        assert response.status_code == 401
        assert response.json()["FlinksCode"] == "ACCESS_DENIED"


def test_the_api_key_check_can_be_disabled(http: httpx.Client) -> None:
    with running_sandbox(clean_settings(api_key="")) as sandbox:
        client = SandboxApi(sandbox, http)
        request_id = client.connect()["RequestId"]

        assert client.post("GetAccountsSummary", {"RequestId": request_id}).status_code == 200


def test_account_ids_differ_between_logins(flinks: SandboxApi) -> None:
    nomfa = flinks.connect("greatday_nomfa")
    mfa = flinks.connect("Greatday")

    ids_a = {
        a["Id"]
        for a in flinks.data("GetAccountsSummary", {"RequestId": nomfa["RequestId"]}).json()[
            "Accounts"
        ]
    }
    ids_b = {
        a["Id"]
        for a in flinks.data("GetAccountsSummary", {"RequestId": mfa["RequestId"]}).json()[
            "Accounts"
        ]
    }

    assert ids_a.isdisjoint(ids_b)


DATA_USERS = [
    user.username
    for user in USERS.values()
    if user.behaviour not in (Behaviour.DISABLED, Behaviour.RETRY_LATER)
]


@pytest.mark.parametrize("username", DATA_USERS)
def test_every_user_with_data_has_a_few_hundred_transactions_in_90_days(
    flinks: SandboxApi, username: str
) -> None:
    login_id = flinks.issue_login(username)
    cached = flinks.authorize({"LoginId": login_id, "MostRecentCached": True})
    assert cached.status_code == 200, cached.text

    body = _detail(flinks, cached.json()["RequestId"])

    accounts = body["Accounts"]
    assert len(accounts) == 5
    counts = [len(a["Transactions"]) for a in accounts]
    assert 200 <= sum(counts) <= 400, counts
    assert all(counts), counts  # every account moved in the quarter
    oldest = min(date.fromisoformat(t["Date"]) for a in accounts for t in a["Transactions"])
    assert oldest >= date.today() - timedelta(days=90)


def test_balances_stay_plausible_over_the_year(flinks: SandboxApi) -> None:
    body = _detail(flinks, flinks.connect()["RequestId"], DaysOfTransactions="Days365")

    for account in body["Accounts"]:
        balances = [t["Balance"] for t in account["Transactions"]]
        assert min(balances) >= 0, account["Title"]
        if account["Type"] == "CreditCard":
            assert max(balances) <= account["Balance"]["Limit"]


def test_the_card_is_paid_from_chequing_on_the_same_days_with_the_same_amounts(
    flinks: SandboxApi,
) -> None:
    body = _detail(flinks, flinks.connect()["RequestId"], DaysOfTransactions="Days365")
    chequing, card = body["Accounts"][0], body["Accounts"][3]

    paid = {
        (t["Date"], t["Debit"])
        for t in chequing["Transactions"]
        if t["Description"] == "PAYMENT - VISA INFINITE"
    }
    received = {
        (t["Date"], t["Credit"])
        for t in card["Transactions"]
        if t["Description"] == "PAYMENT - THANK YOU"
    }

    assert len(paid) >= 11
    assert paid == received


def test_an_expired_detail_request_no_longer_holds_the_card(flinks: SandboxApi) -> None:
    session = flinks.connect()
    assert flinks.data("GetAccountsDetail", {"RequestId": session["RequestId"]}).status_code == 202
    url = f"{flinks.api}/DeleteCard/{session['Login']['Id']}"
    busy = flinks.http.delete(url, headers={"x-api-key": flinks.api_key})
    flinks.control("POST", "clock", {"advance_seconds": 1801})

    deleted = flinks.http.delete(url, headers={"x-api-key": flinks.api_key})

    assert busy.json()["FlinksCode"] == "CARD_IN_USE"
    assert deleted.status_code == 200
