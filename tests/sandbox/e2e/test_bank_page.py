"""The OAuth bank login page in headless Chromium: login, MFA, wrong password, deny."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Page, expect

from tests.sandbox.flinks import PASSWORD, SandboxApi

pytestmark = pytest.mark.e2e


def _start(flinks: SandboxApi, landing_url: str, **params: str) -> str:
    response = flinks.http.get(
        f"{flinks.sandbox.base_url}/v3/oauth/authorize",
        params={
            "institution_id": "FlinksCapital",
            "redirect_uri": landing_url,
            "state": "st-1",
            **params,
        },
        headers={"flinks-auth-key": flinks.token()},
    )
    assert response.status_code == 302, response.text
    location: str = response.headers["location"]
    return location


def _query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def _sign_in(page: Page, username: str, password: str = PASSWORD) -> None:
    page.locator("#username").fill(username)
    page.locator("#password").fill(password)
    page.locator("#sign-in").click()


def test_login_redirects_with_login_id_and_state(
    page: Page, flinks: SandboxApi, landing_url: str
) -> None:
    page.goto(_start(flinks, landing_url))
    _sign_in(page, "greatday_nomfa")

    page.wait_for_url(f"{landing_url}?*")
    expect(page.locator("#landed")).to_be_visible()
    query = _query(page.url)
    assert list(query) == ["loginId", "state"]
    assert query["state"] == ["st-1"]
    live = flinks.authorize(
        {"LoginId": query["loginId"][0], "MostRecentCached": False, "Save": True}
    )
    assert live.status_code == 200


def test_mfa_on_the_bank_page(page: Page, flinks: SandboxApi, landing_url: str) -> None:
    page.goto(_start(flinks, landing_url))
    _sign_in(page, "Greatday")

    expect(page.locator("#prompt")).to_have_text("What city were you born in?")
    page.locator("#answer").fill("Quebec")
    page.locator("#continue").click()
    expect(page.locator("#error")).to_be_visible()
    page.locator("#answer").fill("Montréal")
    page.locator("#continue").click()

    page.wait_for_url(f"{landing_url}?*")
    login_id = _query(page.url)["loginId"][0]
    assert flinks.authorize({"LoginId": login_id, "MostRecentCached": False}).status_code == 203


def test_a_wrong_password_stays_on_the_form(
    page: Page, flinks: SandboxApi, landing_url: str
) -> None:
    bank_url = _start(flinks, landing_url)
    page.goto(bank_url)
    _sign_in(page, "Greatday", "Tuesday")

    expect(page.locator("#error")).to_have_text("The username or password is incorrect.")
    expect(page.locator("#username")).to_have_value("Greatday")
    assert page.url == bank_url


def test_deny_redirects_with_access_denied(
    page: Page, flinks: SandboxApi, landing_url: str
) -> None:
    page.goto(_start(flinks, landing_url, lang="fr"))
    expect(page.locator("#deny")).to_have_text("Refuser l'accès")
    page.locator("#deny").click()

    page.wait_for_url(f"{landing_url}?*")
    query = _query(page.url)
    assert list(query) == ["state", "error", "error_description"]
    assert query["error"] == ["access_denied"]


def test_deny_after_the_password_during_mfa(
    page: Page, flinks: SandboxApi, landing_url: str
) -> None:
    page.goto(_start(flinks, landing_url))
    _sign_in(page, "Greatday")
    expect(page.locator("#prompt")).to_be_visible()
    page.locator("#deny").click()

    page.wait_for_url(f"{landing_url}?*")
    assert _query(page.url)["error"] == ["access_denied"]


def test_the_page_cannot_be_reused_after_the_redirect(
    page: Page, flinks: SandboxApi, landing_url: str
) -> None:
    bank_url = _start(flinks, landing_url)
    page.goto(bank_url)
    _sign_in(page, "greatday_nomfa")
    page.wait_for_url(f"{landing_url}?*")

    response = page.goto(bank_url)

    assert response is not None
    assert response.status == 410
    expect(page.locator("#gone")).to_be_visible()
