"""A pre-2024 third-party client, byte for byte: impak-finance/flinks-python (PyPI ``flinks``).

That client sends no authorize token and no x-api-key, a JSON body built as below, the headers
``cache-control: no-cache`` and ``Content-Type: application/json``, and reads every answer with
``response.json()`` (SetScheduledRefresh included). Its requests are replayed here as it builds
them, against a sandbox configured like an instance created before October 2024.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest

from tests.sandbox.conftest import clean_settings
from tests.sandbox.flinks import ANSWERS
from tests.sandbox.server import SandboxHandle, running_sandbox

HEADERS = {"cache-control": "no-cache", "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def legacy() -> Iterator[SandboxHandle]:
    with running_sandbox(clean_settings(api_key="", require_authorize_token=False)) as sandbox:
        yield sandbox


class LegacyClient:
    """The request-building half of flinks.client.Client and BankingServices, transliterated."""

    def __init__(self, base_url: str, customer_id: str, http: httpx.Client) -> None:
        self.api_endpoint = urljoin(base_url + "/v3/", customer_id) + "/"
        self.http = http

    def _call(self, method: str, path: str, data: Any = None) -> Any:
        response = self.http.request(
            method, urljoin(self.api_endpoint, path), headers=HEADERS, json=data
        )
        body = response.json()
        if response.status_code > 299 and isinstance(body, dict) and body.get("FlinksCode"):
            raise RuntimeError(body["FlinksCode"])
        return body

    def authorize(self, **kw: Any) -> Any:
        data: dict[str, Any] = {"MostRecentCached": kw.get("most_recent_cached", False)}
        for key, name in (
            ("request_id", "RequestId"),
            ("login_id", "LoginId"),
            ("institution", "Institution"),
            ("save", "Save"),
            ("security_responses", "SecurityResponses"),
            ("tag", "Tag"),
        ):
            if kw.get(key) is not None:
                data[name] = kw[key]
        if kw.get("username") and kw.get("password"):
            data["Username"], data["Password"] = kw["username"], kw["password"]
        return self._call("POST", "BankingServices/Authorize", data)

    def get_accounts_detail(self, request_id: str) -> Any:
        data = {"RequestId": request_id, "WithAccountIdentity": False, "WithTransactions": False}
        return self._call("POST", "BankingServices/GetAccountsDetail", data)

    def get_accounts_detail_async(self, request_id: str) -> Any:
        return self._call("GET", "BankingServices/GetAccountsDetailAsync/" + request_id)

    def get_accounts_summary(self, request_id: str) -> Any:
        return self._call("POST", "BankingServices/GetAccountsSummary", {"RequestId": request_id})

    def set_scheduled_refresh(self, login_id: str, is_activated: bool = True) -> Any:
        data = {"LoginId": login_id, "IsActivated": is_activated}
        return self._call("PATCH", "BankingServices/SetScheduledRefresh", data)

    def delete_card(self, login_id: str) -> Any:
        return self._call("DELETE", "BankingServices/DeleteCard/" + login_id)


def test_the_legacy_client_works_unchanged(legacy: SandboxHandle, http: httpx.Client) -> None:
    client = LegacyClient(legacy.base_url, legacy.customer_id, http)

    challenge = client.authorize(
        institution="FlinksCapital", username="Greatday", password="Everyday", save=True
    )
    prompt = challenge["SecurityChallenges"][0]["Prompt"]
    session = client.authorize(
        request_id=challenge["RequestId"], security_responses={prompt: [ANSWERS[prompt]]}
    )
    request_id, login_id = session["RequestId"], session["Login"]["Id"]
    pending = client.get_accounts_detail(request_id)
    detail = client.get_accounts_detail_async(request_id)
    summary = client.get_accounts_summary(request_id)
    refresh = client.set_scheduled_refresh(login_id)
    cached = client.authorize(login_id=login_id, most_recent_cached=True)
    deleted = client.delete_card(login_id)

    assert challenge["HttpStatusCode"] == 203
    assert pending["FlinksCode"] == "OPERATION_PENDING"
    assert len(detail["Accounts"]) == len(summary["Accounts"]) == 5
    assert all(a["Transactions"] == [] for a in detail["Accounts"])
    assert refresh == f"LoginId {login_id} has now been activated for automatic refresh"
    assert cached["Login"]["IsScheduledRefresh"] is True
    assert deleted["HttpStatusCode"] == 200
    with pytest.raises(RuntimeError, match="INVALID_LOGIN"):
        client.authorize(login_id=login_id, most_recent_cached=True)


def test_a_token_sent_to_a_legacy_instance_is_still_checked(
    legacy: SandboxHandle, http: httpx.Client
) -> None:
    response = http.post(
        f"{legacy.api_url}/Authorize",
        json={"Username": "greatday_nomfa", "Password": "Everyday", "Institution": "FlinksCapital"},
        headers={"flinks-auth-key": "not-a-token"},
    )

    assert response.status_code == 401
