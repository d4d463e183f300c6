"""LoginIds: Save, cached and live re-authorization, each user's behaviour, DeleteCard, refresh."""

from __future__ import annotations

import httpx
import pytest

from tests.sandbox.conftest import clean_settings
from tests.sandbox.flinks import SandboxApi
from tests.sandbox.server import running_sandbox


def test_a_saved_login_id_works_later_in_cached_mode(flinks: SandboxApi) -> None:
    first = flinks.connect("greatday_nomfa")
    login_id = first["Login"]["Id"]

    cached = flinks.authorize({"LoginId": login_id, "MostRecentCached": True})

    assert cached.status_code == 200
    assert cached.json()["Login"]["Id"] == login_id
    assert cached.json()["RequestId"] != first["RequestId"]
    assert cached.json()["Login"]["LastRefresh"] == first["Login"]["LastRefresh"]


def test_an_unsaved_login_id_does_not_work_later(flinks: SandboxApi) -> None:
    login_id = flinks.live("greatday_nomfa", Save=False).json()["Login"]["Id"]

    for cached in (True, False):
        response = flinks.authorize({"LoginId": login_id, "MostRecentCached": cached})
        assert response.status_code == 401
        assert response.json()["FlinksCode"] == "INVALID_LOGIN"


def test_cached_mode_skips_mfa_but_live_mode_asks_again(flinks: SandboxApi) -> None:
    login_id = flinks.connect("Greatday")["Login"]["Id"]

    cached = flinks.authorize({"LoginId": login_id, "MostRecentCached": True})
    live = flinks.authorize({"LoginId": login_id, "MostRecentCached": False, "Save": True})
    no_flag = flinks.authorize({"LoginId": login_id})

    assert cached.status_code == 200
    assert live.status_code == 203
    assert no_flag.status_code == 203
    assert flinks.answer(live).json()["Login"]["Id"] == login_id


@pytest.mark.parametrize(
    ("username", "status", "code"),
    [
        ("Greatday", 203, None),
        ("greatday_nomfa", 200, None),
        ("test_disabled_account", 401, "DISABLED_LOGIN"),
        ("test_service_unavailable", 401, "RETRY_LATER"),
        ("test_dispatched", 202, "OPERATION_DISPATCHED"),
    ],
)
def test_a_login_id_keeps_its_users_behaviour_on_live_authorize(
    flinks: SandboxApi, username: str, status: int, code: str | None
) -> None:
    login_id = flinks.issue_login(username)

    response = flinks.authorize({"LoginId": login_id, "MostRecentCached": False, "Save": True})

    assert response.status_code == status
    assert response.json().get("FlinksCode") == code


def test_an_unknown_login_id_is_invalid_login(flinks: SandboxApi) -> None:
    response = flinks.authorize(
        {"LoginId": "5e115eac-1209-4f19-641c-08d6d484e2fe", "MostRecentCached": True}
    )

    assert response.status_code == 401
    assert response.json()["FlinksCode"] == "INVALID_LOGIN"
    assert "LoginId" in response.json()["Message"]


def test_login_ids_are_stable_per_user_and_language(flinks: SandboxApi) -> None:
    first = flinks.connect("greatday_nomfa")["Login"]["Id"]
    second = flinks.connect("GREATDAY_NOMFA")["Login"]["Id"]
    french = flinks.connect("greatday_nomfa", Language="fr")["Login"]["Id"]
    other = flinks.connect("Greatday")["Login"]["Id"]

    assert first == second
    assert len({first, french, other}) == 3


def test_login_ids_can_be_random_per_connection(http: httpx.Client) -> None:
    with running_sandbox(clean_settings(stable_login_ids=False)) as sandbox:
        client = SandboxApi(sandbox, http)

        assert client.connect()["Login"]["Id"] != client.connect()["Login"]["Id"]


def test_delete_card_makes_the_login_id_invalid(flinks: SandboxApi) -> None:
    session = flinks.connect("greatday_nomfa")
    login_id = session["Login"]["Id"]

    deleted = flinks.http.delete(
        f"{flinks.api}/DeleteCard/{login_id}", headers={"x-api-key": flinks.api_key}
    )
    after = flinks.authorize({"LoginId": login_id, "MostRecentCached": True})
    again = flinks.http.delete(
        f"{flinks.api}/DeleteCard/{login_id}", headers={"x-api-key": flinks.api_key}
    )
    data = flinks.data("GetAccountsSummary", {"RequestId": session["RequestId"]})

    assert deleted.status_code == 200
    assert deleted.json()["HttpStatusCode"] == 200
    assert login_id in deleted.json()["Message"]
    assert after.status_code == 401
    assert after.json()["FlinksCode"] == "INVALID_LOGIN"
    assert again.json()["FlinksCode"] == "INVALID_LOGIN"
    assert data.json()["FlinksCode"] == "SESSION_NONEXISTENT"


def test_delete_card_while_data_is_processing_is_card_in_use(flinks: SandboxApi) -> None:
    session = flinks.connect("greatday_nomfa")
    assert flinks.data("GetAccountsDetail", {"RequestId": session["RequestId"]}).status_code == 202
    url = f"{flinks.api}/DeleteCard/{session['Login']['Id']}"

    busy = flinks.http.delete(url, headers={"x-api-key": flinks.api_key})
    flinks.get(f"GetAccountsDetailAsync/{session['RequestId']}")
    done = flinks.http.delete(url, headers={"x-api-key": flinks.api_key})

    assert busy.status_code == 400
    assert busy.json()["FlinksCode"] == "CARD_IN_USE"
    assert done.status_code == 200


def test_set_scheduled_refresh_answers_a_plain_string(flinks: SandboxApi) -> None:
    login_id = flinks.connect("greatday_nomfa")["Login"]["Id"]
    url = f"{flinks.api}/SetScheduledRefresh"
    headers = {"x-api-key": flinks.api_key}

    on = flinks.http.patch(url, json={"LoginId": login_id, "IsActivated": True}, headers=headers)
    state = flinks.authorize({"LoginId": login_id, "MostRecentCached": True}).json()
    off = flinks.http.patch(url, json={"loginId": login_id, "isActivated": False}, headers=headers)

    assert on.status_code == 200
    assert on.json() == f"LoginId {login_id} has now been activated for automatic refresh"
    assert state["Login"]["IsScheduledRefresh"] is True
    assert off.json() == f"LoginId {login_id} has now been deactivated for automatic refresh"


def test_set_scheduled_refresh_on_an_unknown_login_is_invalid_login(flinks: SandboxApi) -> None:
    response = flinks.http.patch(
        f"{flinks.api}/SetScheduledRefresh",
        json={"LoginId": "5e115eac-1209-4f19-641c-08d6d484e2fe", "IsActivated": True},
        headers={"x-api-key": flinks.api_key},
    )

    assert response.status_code == 401
    assert response.json()["FlinksCode"] == "INVALID_LOGIN"


def test_schedule_refresh_on_authorize_applies_to_new_cards_only(flinks: SandboxApi) -> None:
    new = flinks.connect("greatday_nomfa", ScheduleRefresh=True)
    flinks.http.patch(
        f"{flinks.api}/SetScheduledRefresh",
        json={"LoginId": new["Login"]["Id"], "IsActivated": False},
        headers={"x-api-key": flinks.api_key},
    )
    existing = flinks.connect("greatday_nomfa", ScheduleRefresh=True)

    assert new["Login"]["IsScheduledRefresh"] is True
    assert existing["Login"]["IsScheduledRefresh"] is False
