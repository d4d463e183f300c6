"""GenerateAuthorizeToken: the secret key, the token format, single use and expiry."""

from __future__ import annotations

import uuid

import httpx

from app.sandbox.config import TOOLBOX_CUSTOMER_ID, TOOLBOX_SECRET_KEY
from tests.sandbox.conftest import clean_settings
from tests.sandbox.flinks import SandboxApi
from tests.sandbox.server import SandboxHandle, running_sandbox

UNAUTHORIZED = {
    "HttpStatusCode": 401,
    "Message": "You must provide a valid auth key",
    "FlinksCode": "UNAUTHORIZED",
}


def test_the_toolbox_secret_mints_a_uuid4_token(flinks: SandboxApi) -> None:
    response = flinks.post("GenerateAuthorizeToken", **{"flinks-auth-key": TOOLBOX_SECRET_KEY})

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"HttpStatusCode", "Token"}
    assert body["HttpStatusCode"] == 200
    assert uuid.UUID(body["Token"]).version == 4
    assert flinks.token() != body["Token"]


def test_a_missing_or_wrong_secret_gets_flinks_401_body(flinks: SandboxApi) -> None:
    missing = flinks.post("GenerateAuthorizeToken")
    wrong = flinks.post("GenerateAuthorizeToken", **{"flinks-auth-key": str(uuid.uuid4())})
    as_bearer = flinks.post("GenerateAuthorizeToken", Authorization=f"Bearer {TOOLBOX_SECRET_KEY}")

    for response in (missing, wrong, as_bearer):
        assert response.status_code == 401
        assert response.json() == UNAUTHORIZED


def test_an_unknown_customer_id_is_refused(sandbox: SandboxHandle, http: httpx.Client) -> None:
    url = f"{sandbox.base_url}/v3/{uuid.uuid4()}/BankingServices/GenerateAuthorizeToken"
    response = http.post(url, headers={"flinks-auth-key": TOOLBOX_SECRET_KEY})

    assert response.status_code == 401
    assert response.json()["FlinksCode"] == "ACCESS_DENIED"
    assert response.json()["HttpStatusCode"] == 401


def test_paths_are_case_insensitive_as_on_aspnet(
    sandbox: SandboxHandle, http: httpx.Client
) -> None:
    path = f"/v3/{TOOLBOX_CUSTOMER_ID.upper()}/bankingservices/generateauthorizetoken"
    url = sandbox.base_url + path
    response = http.post(url, headers={"flinks-auth-key": TOOLBOX_SECRET_KEY})

    assert response.status_code == 200


def test_wrong_method_and_unknown_endpoint(flinks: SandboxApi, http: httpx.Client) -> None:
    wrong_method = http.get(f"{flinks.api}/GenerateAuthorizeToken")
    unknown = flinks.post("NoSuchEndpoint")

    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "POST"
    assert unknown.status_code == 404


def test_a_token_is_single_use(flinks: SandboxApi) -> None:
    token = flinks.token()

    first = flinks.live("greatday_nomfa", token=token)
    second = flinks.live("greatday_nomfa", token=token)

    assert first.status_code == 200
    assert second.status_code == 401
    assert second.json() == {
        "HttpStatusCode": 401,
        "Message": "You must provide a valid authorize token",
        "FlinksCode": "ACCESS_DENIED",
    }


def test_a_failed_authorize_still_uses_the_token(flinks: SandboxApi) -> None:
    token = flinks.token()

    assert flinks.live("greatday_nomfa", "wrong", token=token).status_code == 401
    assert flinks.live("greatday_nomfa", token=token).json()["FlinksCode"] == "ACCESS_DENIED"


def test_tokens_expire_after_30_minutes_by_default(flinks: SandboxApi) -> None:
    fresh, stale = flinks.token(), flinks.token()
    assert flinks.control("POST", "clock", {"advance_seconds": 1799}).status_code == 200
    assert flinks.live("greatday_nomfa", token=fresh).status_code == 200

    flinks.control("POST", "clock", {"advance_seconds": 2})

    assert flinks.live("greatday_nomfa", token=stale).json()["FlinksCode"] == "ACCESS_DENIED"


def test_the_token_ttl_is_configurable(http: httpx.Client) -> None:
    with running_sandbox(clean_settings(token_ttl_seconds=60)) as sandbox:
        client = SandboxApi(sandbox, http)
        token = client.token()
        client.control("POST", "clock", {"advance_seconds": 61})

        assert client.live("greatday_nomfa", token=token).status_code == 401


def test_a_token_belongs_to_the_customer_that_minted_it(http: httpx.Client) -> None:
    other = str(uuid.uuid4())
    settings = clean_settings(customer_ids=[TOOLBOX_CUSTOMER_ID, other])
    with running_sandbox(settings) as sandbox:
        client = SandboxApi(sandbox, http)
        token = client.token()
        other_api = f"{sandbox.base_url}/v3/{other}/BankingServices"
        body = {
            "Username": "greatday_nomfa",
            "Password": "Everyday",
            "Institution": "FlinksCapital",
        }

        elsewhere = http.post(
            f"{other_api}/Authorize", json=body, headers={"flinks-auth-key": token}
        )
        minted = http.post(
            f"{other_api}/GenerateAuthorizeToken", headers={"flinks-auth-key": TOOLBOX_SECRET_KEY}
        )

        assert elsewhere.status_code == 401
        assert minted.status_code == 200


def test_minting_is_recorded_with_the_key_sent(flinks: SandboxApi) -> None:
    flinks.token()
    flinks.post("GenerateAuthorizeToken", **{"flinks-auth-key": "nope"})

    calls = flinks.calls("GenerateAuthorizeToken")

    assert [(c["status"], c["token"]) for c in calls] == [
        (200, TOOLBOX_SECRET_KEY),
        (401, "nope"),
    ]
    assert calls[1]["flinks_code"] == "UNAUTHORIZED"
