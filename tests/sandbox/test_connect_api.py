"""The Connect page as served, and the JSON endpoints its script calls (no browser here)."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.sandbox.conftest import clean_settings
from tests.sandbox.flinks import ANSWERS, PASSWORD, SandboxApi
from tests.sandbox.server import running_sandbox


def _api(flinks: SandboxApi, path: str, body: dict[str, Any]) -> httpx.Response:
    return flinks.http.post(f"{flinks.sandbox.base_url}/v2/api/{path}", json=body)


def _submit(
    flinks: SandboxApi, username: str, password: str = PASSWORD, **extra: Any
) -> httpx.Response:
    body = {"institution": "FlinksCapital", "username": username, "password": password, **extra}
    if "session" not in body:
        body.setdefault("authorizeToken", flinks.token())
    return _api(flinks, "credentials", body)


@pytest.mark.parametrize("path", ["/v2/", "/", "/v2/?demo=true&authorizeToken=abc"])
def test_the_page_is_served_without_external_resources(flinks: SandboxApi, path: str) -> None:
    page = flinks.http.get(flinks.sandbox.base_url + path)
    script = flinks.http.get(f"{flinks.sandbox.base_url}/v2/static/connect.js")
    css = flinks.http.get(f"{flinks.sandbox.base_url}/v2/static/connect.css")

    assert page.status_code == script.status_code == css.status_code == 200
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "x-frame-options" not in page.headers  # it is made to be framed
    for text in (page.text, css.text):
        assert not re.search(r"(src|href)=\"(https?:)?//", text)
    assert "http://" not in script.text
    assert "https://" not in script.text
    assert "postMessage" in script.text
    assert '"*"' in script.text


def test_v2_without_slash_keeps_the_query(flinks: SandboxApi) -> None:
    response = flinks.http.get(f"{flinks.sandbox.base_url}/v2?demo=true&x=1")

    assert response.status_code == 301
    assert response.headers["location"] == "/v2/?demo=true&x=1"


def test_token_check_does_not_consume_but_credentials_do(flinks: SandboxApi) -> None:
    token = flinks.token()

    checks = [_api(flinks, "token", {"authorizeToken": token}).status_code for _ in range(2)]
    submitted = _submit(flinks, "greatday_nomfa", authorizeToken=token)
    reloaded = _api(flinks, "token", {"authorizeToken": token})
    resubmitted = _submit(flinks, "greatday_nomfa", authorizeToken=token)

    assert checks == [200, 200]
    assert submitted.json()["outcome"] == "connected"
    assert reloaded.status_code == 401
    assert "already used" in reloaded.json()["message"]
    assert resubmitted.status_code == 401


def test_nomfa_connects_with_a_saved_login_and_a_request_id(flinks: SandboxApi) -> None:
    body = _submit(flinks, "greatday_nomfa").json()

    assert body["outcome"] == "connected"
    assert body["institution"] == "FlinksCapital"
    assert len(body["accounts"]) == 5
    cached = flinks.authorize({"LoginId": body["loginId"], "MostRecentCached": True})
    assert cached.status_code == 200
    summary = flinks.data("GetAccountsSummary", {"RequestId": body["requestId"]})
    assert summary.status_code == 200
    assert {a["Id"] for a in summary.json()["Accounts"]} == {a["id"] for a in body["accounts"]}


def test_mfa_then_connected(flinks: SandboxApi) -> None:
    mfa = _submit(flinks, "Greatday", language="fr").json()

    assert mfa["outcome"] == "mfa"
    assert mfa["mfaTypes"] == ["QuestionAndAnswer"]
    prompt = mfa["challenges"][0]["prompt"]
    assert prompt == "Dans quelle ville êtes-vous né?"
    done = _api(
        flinks, "mfa", {"session": mfa["session"], "responses": {prompt: [ANSWERS[prompt]]}}
    )
    assert done.json()["outcome"] == "connected"
    live = flinks.authorize({"LoginId": done.json()["loginId"], "MostRecentCached": False})
    assert live.status_code == 203


def test_retries_reuse_the_session_until_maximum_retry(flinks: SandboxApi) -> None:
    first = _submit(flinks, "Greatday", "bad", maximumRetry=2).json()
    second = _submit(flinks, "Greatday", "bad", session=first["session"]).json()
    locked = _submit(flinks, "greatday_nomfa", session=first["session"])

    assert (first["outcome"], first["flinksCode"], first["failures"]) == (
        "error",
        "INVALID_LOGIN",
        1,
    )
    assert first["maximumRetryReached"] is False
    assert second["maximumRetryReached"] is True
    assert locked.status_code == 403
    assert locked.json()["flinksCode"] == "MAXIMUM_RETRY_REACHED"


def test_a_wrong_answer_is_an_error_and_a_retry_starts_over(flinks: SandboxApi) -> None:
    mfa = _submit(flinks, "Greatday").json()
    wrong = _api(flinks, "mfa", {"session": mfa["session"], "responses": {"x": ["y"]}}).json()
    retry = _submit(flinks, "greatday_nomfa", session=mfa["session"]).json()

    assert wrong["outcome"] == "error"
    assert wrong["flinksCode"] == "UNKNOWN_CHALLENGE_KEY"
    assert retry["outcome"] == "connected"


@pytest.mark.parametrize("username", ["test_disabled_account", "test_service_unavailable"])
def test_error_users_get_a_login_id_in_redirect_mode(flinks: SandboxApi, username: str) -> None:
    body = _submit(flinks, username).json()

    assert body["outcome"] == "connected"
    assert body["requestId"] is None
    live = flinks.authorize({"LoginId": body["loginId"], "MostRecentCached": False, "Save": True})
    assert live.status_code == 401


@pytest.mark.parametrize(
    ("username", "code"),
    [("test_disabled_account", "DISABLED_LOGIN"), ("test_service_unavailable", "RETRY_LATER")],
)
def test_error_users_are_reported_in_event_mode(
    http: httpx.Client, username: str, code: str
) -> None:
    with running_sandbox(clean_settings(connect_error_users="event")) as sandbox:
        client = SandboxApi(sandbox, http)
        body = _submit(client, username).json()

    assert body["outcome"] == "error"
    assert body["flinksCode"] == code


def test_dispatched_connects_with_a_request_id(flinks: SandboxApi) -> None:
    body = _submit(flinks, "test_dispatched").json()

    assert body["outcome"] == "connected"
    assert body["requestId"]


def test_an_unknown_session_or_bad_token(flinks: SandboxApi) -> None:
    assert _submit(flinks, "Greatday", session="nope").status_code == 404
    assert _submit(flinks, "Greatday", authorizeToken="nope").status_code == 401
    assert _api(flinks, "mfa", {"session": "nope", "responses": {}}).status_code == 404


def test_the_token_can_be_made_optional(http: httpx.Client) -> None:
    with running_sandbox(clean_settings(require_authorize_token=False)) as sandbox:
        page = http.get(f"{sandbox.base_url}/v2/")
        body = http.post(
            f"{sandbox.base_url}/v2/api/credentials",
            json={"username": "greatday_nomfa", "password": "Everyday"},
        ).json()

    assert 'data-token-required="false"' in page.text
    assert body["outcome"] == "connected"


def test_the_connect_shortcut(flinks: SandboxApi) -> None:
    token = flinks.token()
    done = flinks.control(
        "POST",
        "connect/complete",
        {
            "authorize_token": token,
            "username": "Greatday",
            "password": "Everyday",
            "answers": ANSWERS,
        },
    )
    reused = flinks.control(
        "POST",
        "connect/complete",
        {"authorize_token": token, "username": "greatday_nomfa", "password": "Everyday"},
    )
    no_answers = flinks.control(
        "POST",
        "connect/complete",
        {"authorize_token": flinks.token(), "username": "Greatday", "password": "Everyday"},
    )

    assert done.status_code == 200
    assert done.json()["institution"] == "FlinksCapital"
    assert (
        flinks.authorize({"LoginId": done.json()["login_id"], "MostRecentCached": True}).status_code
        == 200
    )
    assert reused.status_code == 401
    assert no_answers.json()["error"] == "mfa_answer_missing"
