"""GET /v3/oauth/authorize, the bank login page, and the non-HTML shortcut."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.sandbox.conftest import clean_settings
from tests.sandbox.flinks import ANSWERS, SandboxApi
from tests.sandbox.server import SandboxHandle, running_sandbox

CALLBACK = "http://127.0.0.1:8000/v1/oauth/callback"


def _start(flinks: SandboxApi, token: str | None = None, **params: str) -> httpx.Response:
    query = {
        "institution_id": "FlinksCapital",
        "redirect_uri": CALLBACK,
        "state": "s-123",
        **params,
    }
    return flinks.http.get(
        f"{flinks.sandbox.base_url}/v3/oauth/authorize",
        params=query,
        headers={"flinks-auth-key": token or flinks.token()},
    )


def _bank_url(flinks: SandboxApi, **params: str) -> str:
    response = _start(flinks, **params)
    assert response.status_code == 302, response.text
    location: str = response.headers["location"]
    return location


def _query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def _complete(flinks: SandboxApi, **body: Any) -> httpx.Response:
    return flinks.control("POST", "oauth/complete", body)


def test_authorize_redirects_to_the_sandbox_bank_page(flinks: SandboxApi) -> None:
    location = _bank_url(flinks)

    assert location.startswith(f"{flinks.sandbox.base_url}/oauth/bank/")
    page = flinks.http.get(location)
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert 'name="password"' in page.text
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


def _start_without_token(flinks: SandboxApi) -> httpx.Response:
    return flinks.http.get(
        f"{flinks.sandbox.base_url}/v3/oauth/authorize",
        params={"institution_id": "FlinksCapital", "redirect_uri": CALLBACK},
        headers={"Accept": "application/json"},
    )


def test_no_token_is_needed_but_one_sent_is_checked_and_single_use(flinks: SandboxApi) -> None:
    # Flinks documents only an Accept header here (contract 12.1 #10).
    token = flinks.token()
    missing = _start_without_token(flinks)
    first = _start(flinks, token)
    second = _start(flinks, token)
    secret = _start(flinks, flinks.secret)

    assert missing.status_code == 302
    assert missing.headers["location"].startswith(f"{flinks.sandbox.base_url}/oauth/bank/")
    assert first.status_code == 302
    assert second.status_code == 401
    assert secret.status_code == 401


def test_the_oauth_token_switch_can_require_one(flinks: SandboxApi) -> None:
    assert flinks.control("PATCH", "switches", {"oauth_token": "required"}).status_code == 200
    token = flinks.token()

    missing = _start_without_token(flinks)
    first = _start(flinks, token)

    assert missing.status_code == 401
    assert missing.json()["FlinksCode"] == "ACCESS_DENIED"
    assert first.status_code == 302


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://evil.example/v1/oauth/callback",
        "http://127.0.0.1:8000/v1/oauth/callback/../../evil",
        "http://127.0.0.1:8000/v1/oauth/callback?next=https://evil.example",
        "http://127.0.0.1:8001/v1/oauth/callback",
        "",
    ],
)
def test_a_redirect_uri_off_the_whitelist_is_an_error_never_a_redirect(
    flinks: SandboxApi, redirect_uri: str
) -> None:
    token = flinks.token()
    response = _start(flinks, token, redirect_uri=redirect_uri)

    assert response.status_code == 400
    assert "location" not in response.headers
    assert response.json()["FlinksCode"] == "INVALID_REQUEST"
    # The refused call did not burn the token.
    assert _start(flinks, token).status_code == 302


def test_an_unknown_institution_is_refused(flinks: SandboxApi) -> None:
    response = _start(flinks, institution_id="RBC")

    assert response.status_code == 400
    assert "location" not in response.headers


def test_the_guide_spelling_institution_is_accepted(flinks: SandboxApi) -> None:
    response = flinks.http.get(
        f"{flinks.sandbox.base_url}/v3/oauth/authorize",
        params={"institution": "FlinksCapital", "redirect_uri": CALLBACK, "state": "x"},
        headers={"flinks-auth-key": flinks.token()},
    )
    assert response.status_code == 302


def test_the_bank_form_logs_in_and_redirects_with_login_id_and_state(flinks: SandboxApi) -> None:
    page = _bank_url(flinks)

    response = flinks.http.post(
        page, data={"username": "greatday_nomfa", "password": "Everyday", "action": "login"}
    )

    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith(CALLBACK + "?loginId=")
    query = _query(location)
    assert query["state"] == ["s-123"]
    login_id = query["loginId"][0]
    live = flinks.authorize({"LoginId": login_id, "MostRecentCached": False, "Save": True})
    assert live.status_code == 200
    # The page cannot be replayed.
    assert flinks.http.get(page).status_code == 410


def test_a_wrong_password_shows_the_form_again(flinks: SandboxApi) -> None:
    page = _bank_url(flinks)

    response = flinks.http.post(
        page, data={"username": "<b>Greatday</b>", "password": "nope", "action": "login"}
    )

    assert response.status_code == 200
    assert "location" not in response.headers
    assert 'id="error"' in response.text
    assert "&lt;b&gt;Greatday&lt;/b&gt;" in response.text
    assert "<b>Greatday" not in response.text


def test_mfa_questions_on_the_bank_page(flinks: SandboxApi) -> None:
    page = _bank_url(flinks)

    mfa = flinks.http.post(page, data={"username": "Greatday", "password": "Everyday"})
    prompt = "What city were you born in?"
    assert mfa.status_code == 200
    assert prompt in mfa.text
    wrong = flinks.http.post(page, data={"action": "answer", "answer": "Toronto"})
    assert wrong.status_code == 200
    assert 'id="error"' in wrong.text
    assert prompt in flinks.http.get(page).text  # a reload keeps the question
    done = flinks.http.post(page, data={"action": "answer", "answer": "montreal"})

    assert done.status_code == 302
    login_id = _query(done.headers["location"])["loginId"][0]
    again = flinks.authorize({"LoginId": login_id, "MostRecentCached": False, "Save": True})
    assert again.status_code == 203


def test_the_deny_button_redirects_with_access_denied(flinks: SandboxApi) -> None:
    page = _bank_url(flinks)

    response = flinks.http.post(page, data={"action": "deny"})

    location = response.headers["location"]
    assert response.status_code == 302
    assert location.startswith(CALLBACK + "?state=s-123&error=access_denied&error_description=")
    assert _query(location)["error_description"] == ["The user denied the access"]


def test_french_bank_page(flinks: SandboxApi) -> None:
    page = flinks.http.get(_bank_url(flinks, lang="fr"))

    assert "Mot de passe" in page.text
    assert 'lang="fr"' in page.text


def test_the_shortcut_completes_the_bank_step(flinks: SandboxApi) -> None:
    session = _bank_url(flinks).rsplit("/", 1)[1]

    response = _complete(
        flinks, session=session, username="Greatday", password="Everyday", answers=ANSWERS
    )

    assert response.status_code == 200
    location = response.json()["location"]
    assert _query(location)["state"] == ["s-123"]
    assert "loginId" in _query(location)


def test_the_shortcut_accepts_the_whole_location_and_deny(flinks: SandboxApi) -> None:
    response = _complete(flinks, session=_bank_url(flinks), deny=True)

    assert _query(response.json()["location"])["error"] == ["access_denied"]


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"username": "Greatday", "password": "x"}, 401, "invalid_login"),
        ({"username": "Greatday", "password": "Everyday"}, 401, "mfa_answer_missing"),
        (
            {
                "username": "Greatday",
                "password": "Everyday",
                "answers": {"What city were you born in?": "Paris"},
            },
            401,
            "invalid_security_response",
        ),
    ],
)
def test_the_shortcut_reports_failures(
    flinks: SandboxApi, body: dict[str, Any], status: int, error: str
) -> None:
    response = _complete(flinks, session=_bank_url(flinks), **body)

    assert response.status_code == status
    assert response.json()["error"] == error


def test_the_shortcut_with_an_unknown_session(flinks: SandboxApi) -> None:
    assert _complete(flinks, session="nope", username="x", password="y").status_code == 404


@pytest.mark.parametrize(
    ("username", "status", "code"),
    [
        ("test_disabled_account", 401, "DISABLED_LOGIN"),
        ("test_service_unavailable", 401, "RETRY_LATER"),
        ("test_dispatched", 202, "OPERATION_DISPATCHED"),
    ],
)
def test_error_users_get_a_login_id_and_fail_on_the_live_authorize(
    flinks: SandboxApi, username: str, status: int, code: str
) -> None:
    location = _complete(
        flinks, session=_bank_url(flinks), username=username, password="Everyday"
    ).json()["location"]
    login_id = _query(location)["loginId"][0]

    response = flinks.authorize({"LoginId": login_id, "MostRecentCached": False, "Save": True})

    assert response.status_code == status
    assert response.json()["FlinksCode"] == code


def test_a_redirect_uri_with_a_query_keeps_it(sandbox: SandboxHandle, http: httpx.Client) -> None:
    uri = "https://app.example/cb?flow=1"
    with running_sandbox(clean_settings(redirect_uris=[uri])) as other:
        client = SandboxApi(other, http)
        start = http.get(
            f"{other.base_url}/v3/oauth/authorize",
            params={"institution_id": "FlinksCapital", "redirect_uri": uri, "state": "z"},
            headers={"flinks-auth-key": client.token()},
        )
        done = client.control(
            "POST",
            "oauth/complete",
            {"session": start.headers["location"], "deny": True},
        ).json()["location"]

    assert done.startswith("https://app.example/cb?flow=1&state=z&error=access_denied")


def test_oauth_calls_are_recorded(flinks: SandboxApi) -> None:
    token = flinks.token()
    _start(flinks, token, tag="t-1")

    [call] = flinks.calls("OAuthAuthorize")

    assert call["status"] == 302
    assert call["token"] == token
    assert call["tag"] == "t-1"
    assert call["query"] == ["institution_id", "redirect_uri", "state", "tag"]
