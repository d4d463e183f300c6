"""/__sandbox/identity: the dev-only token issuer (JWKS, token, rotate, CORS)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt
import pytest

from tests.sandbox.conftest import clean_settings
from tests.sandbox.server import SandboxHandle, running_sandbox

ORIGIN = "http://127.0.0.1:8000"  # the BFF's demo page


def identity_url(sandbox: SandboxHandle) -> str:
    return f"{sandbox.base_url}/__sandbox/identity"


def jwks(sandbox: SandboxHandle, http: httpx.Client) -> list[dict[str, Any]]:
    response = http.get(f"{identity_url(sandbox)}/jwks.json")
    assert response.status_code == 200, response.text
    keys: list[dict[str, Any]] = response.json()["keys"]
    return keys


def mint(sandbox: SandboxHandle, http: httpx.Client, body: Any) -> httpx.Response:
    return http.post(f"{identity_url(sandbox)}/token", json=body)


def decode(token: str, key: dict[str, Any], audience: str = "flinks-bff") -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(
        token, jwt.PyJWK(key), algorithms=["ES256"], audience=audience
    )
    return claims


def test_the_jwks_holds_one_public_es256_signing_key(
    sandbox: SandboxHandle, http: httpx.Client
) -> None:
    (key,) = jwks(sandbox, http)

    assert {k: key[k] for k in ("kty", "crv", "alg", "use")} == {
        "kty": "EC",
        "crv": "P-256",
        "alg": "ES256",
        "use": "sig",
    }
    assert key["kid"]
    assert key["x"]
    assert key["y"]
    assert "d" not in key  # never the private part


def test_a_token_is_minted_for_the_subject_asked_for(
    sandbox: SandboxHandle, http: httpx.Client
) -> None:
    (key,) = jwks(sandbox, http)
    before = int(time.time())

    response = mint(sandbox, http, {"sub": "dev-user"})
    answer = response.json()
    claims = decode(answer["token"], key)

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert jwt.get_unverified_header(answer["token"])["kid"] == key["kid"]
    assert answer["token_type"] == "Bearer"
    assert answer["sub"] == claims["sub"] == "dev-user"
    assert answer["issuer"] == claims["iss"] == identity_url(sandbox)
    assert answer["audience"] == claims["aud"] == "flinks-bff"
    assert claims["exp"] - claims["iat"] == 3600
    assert before <= claims["iat"] <= int(time.time())
    assert datetime.fromisoformat(answer["expires_at"]) == datetime.fromtimestamp(
        claims["exp"], UTC
    )
    assert claims["jti"]


def test_the_audience_and_lifetime_can_be_chosen(
    sandbox: SandboxHandle, http: httpx.Client
) -> None:
    (key,) = jwks(sandbox, http)

    short = mint(sandbox, http, {"sub": "u", "audience": "my-api", "ttl": 60}).json()
    longest = mint(sandbox, http, {"sub": "u", "ttl": 86_400}).json()
    claims = decode(short["token"], key, audience="my-api")

    assert claims["aud"] == "my-api"
    assert claims["exp"] - claims["iat"] == 60
    assert decode(longest["token"], key)["exp"] - claims["iat"] >= 86_400


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"sub": ""},
        {"sub": 42},
        {"sub": "u", "ttl": 0},
        {"sub": "u", "ttl": 86_401},
        {"sub": "u", "ttl": "60"},
        {"sub": "u", "ttl": True},
        {"sub": "u", "ttl": 1.5},
        {"sub": "u", "audience": ""},
        {"sub": "u", "scope": "admin"},
        ["u"],
        "u",
        None,
    ],
)
def test_a_bad_body_is_refused_with_422(
    sandbox: SandboxHandle, http: httpx.Client, body: Any
) -> None:
    response = mint(sandbox, http, body)

    assert response.status_code == 422
    assert response.json()["error"] == "invalid"
    assert response.json()["detail"]


def test_a_body_that_is_not_json_is_refused_with_422(
    sandbox: SandboxHandle, http: httpx.Client
) -> None:
    response = http.post(
        f"{identity_url(sandbox)}/token",
        content=b"sub=dev-user",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    assert response.status_code == 422
    assert response.json()["error"] == "invalid"


def test_rotate_replaces_the_key(sandbox: SandboxHandle, http: httpx.Client) -> None:
    (old_key,) = jwks(sandbox, http)
    old_token = mint(sandbox, http, {"sub": "u"}).json()["token"]

    rotated = http.post(f"{identity_url(sandbox)}/rotate")
    (new_key,) = jwks(sandbox, http)
    new_token = mint(sandbox, http, {"sub": "u"}).json()["token"]

    assert rotated.status_code == 200
    assert rotated.json() == {"kid": new_key["kid"]}
    assert new_key["kid"] != old_key["kid"]
    assert jwt.get_unverified_header(new_token)["kid"] == new_key["kid"]
    assert decode(new_token, new_key)["sub"] == "u"
    with pytest.raises(jwt.InvalidSignatureError):
        decode(old_token, new_key)


def test_the_issuer_follows_the_configured_public_url(http: httpx.Client) -> None:
    public = "http://sandbox.example.test:8001"
    with running_sandbox(clean_settings(public_url=public)) as sandbox:
        answer = mint(sandbox, http, {"sub": "u"}).json()

    assert answer["issuer"] == f"{public}/__sandbox/identity"
    assert (
        jwt.decode(answer["token"], options={"verify_signature": False})["iss"]
        == (answer["issuer"])
    )


def test_a_cross_origin_page_may_call_it(sandbox: SandboxHandle, http: httpx.Client) -> None:
    base = identity_url(sandbox)
    preflight = http.options(
        f"{base}/token",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    minted = http.post(f"{base}/token", json={"sub": "u"}, headers={"Origin": ORIGIN})
    keys = http.get(f"{base}/jwks.json", headers={"Origin": ORIGIN})
    rotated = http.post(f"{base}/rotate", headers={"Origin": ORIGIN})

    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "content-type" in preflight.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in preflight.headers
    for response in (minted, keys, rotated):
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "*"


def test_its_calls_are_not_recorded_as_flinks_calls(
    sandbox: SandboxHandle, http: httpx.Client
) -> None:
    mint(sandbox, http, {"sub": "u"})
    jwks(sandbox, http)

    assert http.get(f"{sandbox.base_url}/__sandbox/calls").json() == []


def test_an_unknown_path_or_method_under_it_is_refused(
    sandbox: SandboxHandle, http: httpx.Client
) -> None:
    base = identity_url(sandbox)

    assert http.get(f"{base}/nothing").status_code == 404
    assert http.post(f"{base}/token/", json={"sub": "u"}).status_code == 404  # no redirect
    assert http.get(f"{base}/token").status_code == 405
    assert http.delete(f"{base}/jwks.json").status_code == 405


def test_it_exists_only_with_the_control_api(http: httpx.Client) -> None:
    with running_sandbox(clean_settings(control_api=False)) as sandbox:
        base = identity_url(sandbox)
        answers = [
            http.get(f"{base}/jwks.json").status_code,
            http.post(f"{base}/token", json={"sub": "u"}).status_code,
            http.post(f"{base}/rotate").status_code,
        ]

    assert answers == [404, 404, 404]
