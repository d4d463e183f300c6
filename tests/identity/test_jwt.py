"""JwtVerifier against a JWKS served over real HTTP (uvicorn on a reserved port), with tokens
signed by keys the tests make; and against the sandbox's dev issuer.

Token times (`exp`, `nbf`) are checked by PyJWT against the real clock, so they are set around
`time.time()` with margins far wider than a test takes. The JWKS cache and refetch limits run on
the verifier's clock, a FakeClock moved by hand.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from app.identity import (
    ASYMMETRIC_ALGORITHMS,
    InvalidToken,
    JwtConfig,
    JwtVerifier,
    check_algorithms,
)
from tests.clock import FakeClock
from tests.ports import reserve_port
from tests.sandbox.conftest import clean_settings
from tests.sandbox.server import SandboxHandle, running_sandbox, serve_quietly
from tests.waiting import scaled, wait_until_async

ISSUER = "https://id.example.test/"
AUDIENCE = "flinks-bff"
MIN_INTERVAL = 30.0
TTL = 300.0

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@dataclass(frozen=True)
class Signer:
    """A key pair of the identity provider's: its JWK, its PEM, and tokens it signs."""

    kid: str
    alg: str
    private_key: PrivateKey

    def jwk(self, **changes: Any) -> dict[str, Any]:
        """The public JWK with kid, alg and use; a change to None drops that member."""
        algorithm = jwt.get_algorithm_by_name(self.alg)
        jwk: dict[str, Any] = algorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        jwk.update({"kid": self.kid, "alg": self.alg, "use": "sig"}, **changes)
        return {key: value for key, value in jwk.items() if value is not None}

    def pem(self) -> str:
        return (
            self.private_key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    def token(self, *, kid: str | None = "", alg: str | None = None, **claims: Any) -> str:
        """Signed with this key; claims default to a valid token for ISSUER and AUDIENCE (a
        claim given as None is left out). kid "" means this key's own, None none at all."""
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "user-1",
            "iat": now,
            "exp": now + 600,
        }
        payload.update(claims)
        payload = {key: value for key, value in payload.items() if value is not None}
        headers = {} if kid is None else {"kid": kid or self.kid}
        return jwt.encode(payload, self.private_key, algorithm=alg or self.alg, headers=headers)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(header: dict[str, Any], payload: dict[str, Any], sign: bytes | None = None) -> str:
    """A token put together by hand, as an attacker would: HMAC-signed with `sign`, or
    unsigned."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    signature = b""
    if sign is not None:
        signature = hmac.new(sign, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def valid_claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "iat": now, "exp": now + 600} | changes


class JwksServer:
    """The identity provider's JWKS endpoint: what it answers, and how often it was asked.

    `/jwks.json` answers `{"keys": keys}` with `status`, or `body` as sent when set; while
    `gate` is set and not released, it holds its answer. `/moved` redirects to `/jwks.json`."""

    def __init__(self) -> None:
        self.url = ""
        self.gate: threading.Event | None = None
        self.reset()

    def reset(self) -> None:
        if self.gate is not None:
            self.gate.set()  # a held request from a failed test must not hang the server
        self.keys: list[Any] = []
        self.status = 200
        self.body: bytes | None = None
        self.gate = None
        self.requests = 0

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/jwks.json"

    async def jwks(self, request: Request) -> Response:
        self.requests += 1
        gate = self.gate
        if gate is not None:
            await asyncio.to_thread(gate.wait, scaled(30))
        if self.body is not None:
            return Response(self.body, self.status, media_type="application/json")
        return JSONResponse({"keys": self.keys}, self.status)

    async def moved(self, request: Request) -> Response:
        return RedirectResponse("/jwks.json", 302)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/jwks.json", self.jwks, methods=["GET"]),
                Route("/moved", self.moved, methods=["GET"]),
            ]
        )


@pytest.fixture(scope="module")
def _jwks_server() -> Iterator[JwksServer]:
    server = JwksServer()
    with serve_quietly(server.app()) as served:
        server.url = served.url
        yield server
    server.reset()


@pytest.fixture
def jwks(_jwks_server: JwksServer) -> Iterator[JwksServer]:
    _jwks_server.reset()
    yield _jwks_server
    _jwks_server.reset()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture(scope="module")
def ec_keys() -> list[Signer]:
    return [Signer(f"ec-{n}", "ES256", ec.generate_private_key(ec.SECP256R1())) for n in range(3)]


@pytest.fixture(scope="module")
def rsa_key() -> Signer:
    return Signer("rsa-1", "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="module")
def weak_rsa_key() -> Signer:
    """Under 2048 bits: a key the verifier must never use."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    return Signer("weak", "RS256", key)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def jwks_verifier(
    http: httpx.AsyncClient, jwks: JwksServer, clock: FakeClock, **config: Any
) -> JwtVerifier:
    settings: dict[str, Any] = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "algorithms": ("ES256", "RS256"),
        "jwks_url": jwks.jwks_url,
        "jwks_cache_ttl": TTL,
        "jwks_min_interval": MIN_INTERVAL,
    } | config
    return JwtVerifier(JwtConfig(**settings), http, clock=clock)


async def refusal(verifier: JwtVerifier, token: str) -> str:
    with pytest.raises(InvalidToken) as refused:
        await verifier.verify(token)
    return refused.value.reason


# --- tokens that verify ---------------------------------------------------------------------


async def test_a_valid_es256_token_gives_its_subject(
    jwks: JwksServer, http: httpx.AsyncClient, clock: FakeClock, ec_keys: list[Signer]
) -> None:
    jwks.keys = [key.jwk() for key in ec_keys]
    verifier = jwks_verifier(http, jwks, clock)

    assert await verifier.verify(ec_keys[1].token(sub="alice@example.com")) == "alice@example.com"
    assert await verifier.verify(ec_keys[2].token(sub="bob")) == "bob"
    assert jwks.requests == 1


async def test_a_valid_rs256_token_gives_its_subject(
    jwks: JwksServer, http: httpx.AsyncClient, clock: FakeClock, rsa_key: Signer
) -> None:
    jwks.keys = [rsa_key.jwk()]
    verifier = jwks_verifier(http, jwks, clock)

    assert await verifier.verify(rsa_key.token(sub="user-42")) == "user-42"


async def test_an_rsa_key_without_alg_serves_every_allowed_rsa_algorithm(
    jwks: JwksServer, http: httpx.AsyncClient, clock: FakeClock, rsa_key: Signer
) -> None:
    jwks.keys = [rsa_key.jwk(alg=None)]
    verifier = jwks_verifier(http, jwks, clock, algorithms=("RS256", "PS256"))

    assert await verifier.verify(rsa_key.token(alg="RS256")) == "user-1"
    assert await verifier.verify(rsa_key.token(alg="PS256")) == "user-1"


async def test_an_audience_list_that_includes_ours_is_accepted(
    jwks: JwksServer, http: httpx.AsyncClient, clock: FakeClock, ec_keys: list[Signer]
) -> None:
    jwks.keys = [ec_keys[0].jwk()]
    verifier = jwks_verifier(http, jwks, clock)

    assert await verifier.verify(ec_keys[0].token(aud=["other-api", AUDIENCE])) == "user-1"


# --- claims ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds_past_exp", "reason"), [(120, "expired"), (3600, "expired"), (10, None)]
)
async def test_expiry_is_refused_beyond_the_leeway_and_accepted_within_it(
    jwks: JwksServer,
    http: httpx.AsyncClient,
    clock: FakeClock,
    ec_keys: list[Signer],
    seconds_past_exp: int,
    reason: str | None,
) -> None:
    jwks.keys = [ec_keys[0].jwk()]
    verifier = jwks_verifier(http, jwks, clock, leeway=30.0)
    now = int(time.time())
    token = ec_keys[0].token(iat=now - 7200, exp=now - seconds_past_exp)

    if reason is None:
        assert await verifier.verify(token) == "user-1"
    else:
        assert await refusal(verifier, token) == reason


async def test_a_token_not_valid_yet_is_refused(
    jwks: JwksServer, http: httpx.AsyncClient, clock: FakeClock, ec_keys: list[Signer]
) -> None:
    jwks.keys = [ec_keys[0].jwk()]
    verifier = jwks_verifier(http, jwks, clock, leeway=30.0)
    now = int(time.time())

    assert await refusal(verifier, ec_keys[0].token(nbf=now + 600)) == "not_yet_valid"
    assert await refusal(verifier, ec_keys[0].token(iat=now + 600)) == "not_yet_valid"
    assert await verifier.verify(ec_keys[0].token(nbf=now + 10)) == "user-1"


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"iss": "https://evil.example.test/"}, "issuer"),
        ({"iss": ISSUER.rstrip("/")}, "issuer"),
        ({"iss": None}, "issuer"),
        ({"aud": "another-api"}, "audience"),
        ({"aud": ["another-api", "a-third"]}, "audience"),
        ({"aud": None}, "audience"),
        ({"exp": None}, "no_expiry"),
        ({"sub": None}, "no_subject"),
        ({"sub": ""}, "bad_subject"),
        ({"sub": 12345}, "bad_subject"),
        ({"sub": "x" * 256}, "bad_subject"),
        ({"sub": "alice\nadmin"}, "bad_subject"),
        ({"sub": "alice\x00"}, "bad_subject"),
        ({"sub": "alice\x85"}, "bad_subject"),
        ({"sub": "alice\x7f"}, "bad_subject"),
        ({"jti": 7}, "invalid"),
    ],
    ids=lambda value: json.dumps(value) if isinstance(value, dict) else str(value),
)
async def test_a_token_with_a_wrong_or_missing_claim_is_refused(
    jwks: JwksServer,
    http: httpx.AsyncClient,
    clock: FakeClock,
    ec_keys: list[Signer],
    claims: dict[str, Any],
    reason: str,
) -> None:
    jwks.keys = [ec_keys[0].jwk()]
    verifier = jwks_verifier(http, jwks, clock)

    assert await refusal(verifier, ec_keys[0].token(**claims)) == reason


async def test_a_subject_of_255_characters_of_any_script_is_accepted(
    jwks: JwksServer, http: httpx.AsyncClient, clock: FakeClock, ec_keys: list[Signer]
) -> None:
    jwks.keys = [ec_keys[0].jwk()]
    verifier = jwks_verifier(http, jwks, clock)
    longest = "é" * 255

    assert await verifier.verify(ec_keys[0].token(sub=longest)) == longest
    assert await verifier.verify(ec_keys[0].token(sub="auth0|5f7c 8ec7")) == "auth0|5f7c 8ec7"


# --- algorithms and signatures --------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
async def test_an_unsigned_token_is_refused(
    jwks: JwksServer, http: httpx.AsyncClient, clock: FakeClock, ec_keys: list[Signer], alg: str
) -> None:
    jwks.keys = [ec_keys[0].jwk()]
    verifier = jwks_verifier(http, jwks, clock)
    token = forged({"alg": alg, "typ": "JWT", "kid": ec_keys[0].kid}, valid_claims())

    assert await refusal(verifier, token) == "algorithm"


async def test_hs256_signed_with_the_public_key_as_hmac_secret_is_refused(
    jwks: JwksServer, http: httpx.AsyncClient, clock: FakeClock, rsa_key: Signer
) -> None:
    """The classic key-confusion forgery: the public PEM, which anyone can read, as a secret."""
    jwks.keys = [rsa_key.jwk()]
    verifier = jwks_verifier(http, jwks, clock)
    header = {"alg": "HS256", "typ": "JWT", "kid": rsa_key.kid}
    token = forged(header, valid_claims(), sign=rsa_key.pem().encode())
    pem_mode = JwtVerifier(
        JwtConfig(ISSUER, AUDIENCE, ("RS256",), public_key=rsa_key.pem()), http, clock=clock
    )

    assert await refusal(verifier, token) == "algorithm"
    assert await refusal(pem_mode, token) == "algorithm"
    assert await refusal(pem_mode, forged({"alg": "HS256"}, valid_claims(), sign=b"")) == (
        "algorithm"
    )


async def test_an_algorithm_outside_the_allow_list_is_refused(
    jwks: JwksServer, http: httpx.AsyncClient, clock: FakeClock, rsa_key: Signer
) -> None:
    jwks.keys = [rsa_key.jwk(alg=None)]
    verifier = jwks_verifier(http, jwks, clock, algorithms=("ES256",))
    rs256 = jwks_verifier(http, jwks, clock, algorithms=("RS256",))

    assert await refusal(verifier, rsa_key.token()) == "algorithm"
    assert await refusal(rs256, rsa_key.token(alg="PS256")) == "algorithm"
    assert jwks.requests == 0  # refused on its header, before any key is looked up


async def test_an_algorithm_that_does_not_fit_the_named_key_is_refused(
    jwks: JwksServer,
    http: httpx.AsyncClient,
    clock: FakeClock,
    ec_keys: list[Signer],
    rsa_key: Signer,
) -> None:
    jwks.keys = [ec_keys[0].jwk(), rsa_key.jwk()]
    verifier = jwks_verifier(http, jwks, clock, algorithms=("ES256", "RS256", "PS256"))

    # An RS256 token that names the EC key; a PS256 token for a JWK that says RS256 only.
    assert await refusal(verifier, rsa_key.token(kid=ec_keys[0].kid)) == "algorithm"
    assert await refusal(verifier, rsa_key.token(alg="PS256")) == "algorithm"


async def test_a_bad_signature_is_refused(
    jwks: JwksServer, http: httpx.AsyncClient, clock: FakeClock, ec_keys: list[Signer]
) -> None:
    jwks.keys = [ec_keys[0].jwk(), ec_keys[1].jwk()]
    verifier = jwks_verifier(http, jwks, clock)
    header, _, signature = ec_keys[0].token(sub="alice").split(".")
    _, payload, _ = ec_keys[0].token(sub="admin").split(".")

    assert await refusal(verifier, f"{header}.{payload}.{signature}") == "signature"
    assert await refusal(verifier, f"{header}.{payload}.") == "signature"
    # Signed by one key of the set, naming another.
    assert await refusal(verifier, ec_keys[1].token(kid=ec_keys[0].kid)) == "signature"


@pytest.mark.parametrize(
    "token",
    ["", "abc", "a.b.c", "a.b", "x" * 20_000, "ab.cd.ef.gh", "bm90IGpzb24.e30.AAAA"],
    ids=["empty", "word", "garbage", "two-parts", "oversized", "four-parts", "header-not-json"],
)
async def test_a_malformed_token_is_refused(
    jwks: JwksServer, http: httpx.AsyncClient, clock: FakeClock, token: str
) -> None:
    verifier = jwks_verifier(http, jwks, clock)

    assert await refusal(verifier, token) == "malformed"
    assert await refusal(verifier, forged({"alg": "ES256", "kid": 7}, valid_claims())) == (
        "malformed"
    )
    assert jwks.requests == 0


# --- key ids, JWKS cache and refetch -------------------------------------------------------


async def test_a_token_without_kid_needs_a_key_set_of_one(
    jwks: JwksServer, http: httpx.AsyncClient, clock: FakeClock, ec_keys: list[Signer]
) -> None:
    jwks.keys = [ec_keys[0].jwk()]
    one = jwks_verifier(http, jwks, clock)
    assert await one.verify(ec_keys[0].token(kid=None)) == "user-1"

    jwks.keys = [ec_keys[0].jwk(), ec_keys[1].jwk()]
    two = jwks_verifier(http, jwks, clock)
    assert await refusal(two, ec_keys[0].token(kid=None)) == "no_kid"


async def test_an_unknown_kid_refetches_and_a_rotated_key_is_accepted(
    jwks: JwksServer, http: httpx.AsyncClient, clock: FakeClock, ec_keys: list[Signer]
) -> None:
    first, second, third = ec_keys
    jwks.keys = [first.jwk()]
    verifier = jwks_verifier(http, jwks, clock)
    assert await verifier.verify(first.token()) == "user-1"
    assert jwks.requests == 1

    # The provider rotates: the old key leaves the set, a new one comes.
    jwks.keys = [second.jwk()]
    clock.advance(MIN_INTERVAL + 1)
    assert await verifier.verify(second.token()) == "user-1"
    assert jwks.requests == 2
    assert await refusal(verifier, first.token()) == "unknown_kid"

    # Another new kid soon after: no refetch within jwks_min_interval...
    jwks.keys = [second.jwk(), third.jwk()]
    clock.advance(MIN_INTERVAL - 1)
    assert await refusal(verifier, third.token()) == "unknown_kid"
    assert await refusal(verifier, third.token()) == "unknown_kid"
    assert jwks.requests == 2
    # ...and once it has passed, one.
    clock.advance(1)
    assert await verifier.verify(third.token()) == "user-1"
    assert await verifier.verify(second.token()) == "user-1"
    assert jwks.requests == 3


async def test_made_up_kids_cause_at_most_one_fetch_per_interval(
    jwks: JwksServer, http: httpx.AsyncClient, clock: FakeClock, ec_keys: list[Signer]
) -> None:
    jwks.keys = [ec_keys[0].jwk()]
    verifier = jwks_verifier(http, jwks, clock)
    await verifier.verify(ec_keys[0].token())
    clock.advance(MIN_INTERVAL)

    for n in range(20):
        assert await refusal(verifier, ec_keys[0].token(kid=f"made-up-{n}")) == "unknown_kid"

    assert jwks.requests == 2


async def test_the_key_set_is_cached_for_its_ttl_and_then_fetched_again(
    jwks: JwksServer, http: httpx.AsyncClient, clock: FakeClock, ec_keys: list[Signer]
) -> None:
    jwks.keys = [ec_keys[0].jwk()]
    verifier = jwks_verifier(http, jwks, clock)
    await verifier.verify(ec_keys[0].token())

    clock.advance(TTL - 1)
    await verifier.verify(ec_keys[0].token())
    assert jwks.requests == 1

    clock.advance(1)
    await verifier.verify(ec_keys[0].token())
    assert jwks.requests == 2


async def test_a_failed_refetch_keeps_the_cached_keys(
    jwks: JwksServer, http: httpx.AsyncClient, clock: FakeClock, ec_keys: list[Signer]
) -> None:
    jwks.keys = [ec_keys[0].jwk()]
    verifier = jwks_verifier(http, jwks, clock)
    await verifier.verify(ec_keys[0].token())

    jwks.status = 503
    clock.advance(TTL)
    assert await verifier.verify(ec_keys[0].token()) == "user-1"
    assert await verifier.verify(ec_keys[0].token()) == "user-1"
    assert jwks.requests == 2  # the next try waits for jwks_min_interval

    jwks.status = 200
    jwks.keys = [ec_keys[1].jwk()]
    clock.advance(MIN_INTERVAL)
    assert await verifier.verify(ec_keys[1].token()) == "user-1"
    assert jwks.requests == 3


async def test_concurrent_verifies_share_one_fetch(
    jwks: JwksServer, http: httpx.AsyncClient, clock: FakeClock, ec_keys: list[Signer]
) -> None:
    """jwks_min_interval is 0: only the shared fetch keeps these to one request each."""
    verifier = jwks_verifier(http, jwks, clock, jwks_min_interval=0.0)

    async def all_at_once(signer: Signer, expected_requests: int) -> None:
        gate = jwks.gate = threading.Event()
        tasks = [
            asyncio.create_task(verifier.verify(signer.token(sub=f"user-{n}"))) for n in range(8)
        ]

        async def fetch_started() -> bool:
            return jwks.requests >= expected_requests

        # Every verify has run up to the wait before the fetch it started reached the server.
        await wait_until_async(fetch_started, what="the JWKS fetch to reach the server")
        tasks[0].cancel()  # a caller that gives up does not end the fetch for the others
        gate.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)

        assert isinstance(results[0], asyncio.CancelledError)
        assert results[1:] == [f"user-{n}" for n in range(1, 8)]
        assert jwks.requests == expected_requests

    jwks.keys = [ec_keys[0].jwk()]
    await all_at_once(ec_keys[0], expected_requests=1)  # a cold cache
    jwks.keys = [ec_keys[0].jwk(), ec_keys[1].jwk()]
    await all_at_once(ec_keys[1], expected_requests=2)  # an unknown kid


# --- when the key set cannot be had ---------------------------------------------------------


async def test_no_jwks_server_and_no_cache_is_keys_unavailable(
    http: httpx.AsyncClient, clock: FakeClock, ec_keys: list[Signer]
) -> None:
    with reserve_port() as nobody_listening:
        config = JwtConfig(
            ISSUER, AUDIENCE, ("ES256",), jwks_url=f"{nobody_listening.url}/jwks.json"
        )
        verifier = JwtVerifier(config, http, clock=clock)

        assert await refusal(verifier, ec_keys[0].token()) == "keys_unavailable"


async def test_a_failing_jwks_is_tried_again_only_after_the_interval(
    jwks: JwksServer, http: httpx.AsyncClient, clock: FakeClock, ec_keys: list[Signer]
) -> None:
    jwks.status = 500
    verifier = jwks_verifier(http, jwks, clock)

    assert await refusal(verifier, ec_keys[0].token()) == "keys_unavailable"
    assert await refusal(verifier, ec_keys[0].token()) == "keys_unavailable"
    assert jwks.requests == 1

    jwks.status = 200
    jwks.keys = [ec_keys[0].jwk()]
    clock.advance(MIN_INTERVAL)
    assert await verifier.verify(ec_keys[0].token()) == "user-1"
    assert jwks.requests == 2


@pytest.mark.parametrize(
    "answer",
    ["status_500", "status_404", "not_json", "not_an_object", "no_keys", "oversized", "no_usable"],
)
async def test_an_unusable_jwks_answer_is_keys_unavailable(
    jwks: JwksServer,
    http: httpx.AsyncClient,
    clock: FakeClock,
    ec_keys: list[Signer],
    answer: str,
) -> None:
    good = ec_keys[0].jwk()
    jwks.keys = [good]
    if answer.startswith("status_"):
        jwks.status = int(answer.removeprefix("status_"))
    elif answer == "not_json":
        jwks.body = b"<html>sign in</html>"
    elif answer == "not_an_object":
        jwks.body = json.dumps([good]).encode()
    elif answer == "no_keys":
        jwks.body = json.dumps({"key": [good]}).encode()
    elif answer == "oversized":
        jwks.body = json.dumps({"keys": [good], "padding": "x" * 70_000}).encode()
    else:
        jwks.keys = [good | {"use": "enc"}]
    verifier = jwks_verifier(http, jwks, clock)

    assert await refusal(verifier, ec_keys[0].token()) == "keys_unavailable"
    assert jwks.requests == 1


async def test_a_redirect_from_the_jwks_url_is_not_followed(
    jwks: JwksServer, http: httpx.AsyncClient, clock: FakeClock, ec_keys: list[Signer]
) -> None:
    jwks.keys = [ec_keys[0].jwk()]
    verifier = jwks_verifier(http, jwks, clock, jwks_url=f"{jwks.url}/moved")

    assert await refusal(verifier, ec_keys[0].token()) == "keys_unavailable"
    assert jwks.requests == 0


async def test_keys_that_are_not_for_verifying_signatures_are_ignored(
    jwks: JwksServer,
    http: httpx.AsyncClient,
    clock: FakeClock,
    ec_keys: list[Signer],
    rsa_key: Signer,
    weak_rsa_key: Signer,
) -> None:
    weak = weak_rsa_key
    jwks.keys = [
        ec_keys[0].jwk(use="enc"),
        ec_keys[1].jwk(key_ops=["encrypt"]),
        {"kty": "oct", "kid": "hmac", "alg": "HS256", "k": _b64(b"s" * 32)},
        {"kty": "EC", "kid": "broken", "crv": "P-256", "x": "AAAA"},
        {"kty": "RSA", "kid": "enc-alg", "alg": "RSA-OAEP", "n": "AQAB", "e": "AQAB"},
        "not a key",
        weak.jwk(),
        rsa_key.jwk(use=None),
        ec_keys[2].jwk(alg=None, use=None, key_ops=["verify"]),
    ]
    verifier = jwks_verifier(http, jwks, clock)

    assert await verifier.verify(rsa_key.token()) == "user-1"
    assert await verifier.verify(ec_keys[2].token()) == "user-1"
    assert await refusal(verifier, ec_keys[0].token()) == "unknown_kid"
    assert await refusal(verifier, ec_keys[1].token()) == "unknown_kid"
    hmac_token = forged({"alg": "HS256", "kid": "hmac"}, valid_claims(), sign=b"s" * 32)
    assert await refusal(verifier, hmac_token) == "algorithm"
    with pytest.warns(jwt.InsecureKeyLengthWarning):
        weak_token = weak.token()
    assert await refusal(verifier, weak_token) == "unknown_kid"


# --- a public key instead of a JWKS ---------------------------------------------------------


async def test_public_key_mode_verifies_with_the_pem(
    jwks: JwksServer, http: httpx.AsyncClient, clock: FakeClock, ec_keys: list[Signer]
) -> None:
    signer, other = ec_keys[0], ec_keys[1]
    config = JwtConfig(ISSUER, AUDIENCE, ("es256", "RS256"), public_key=signer.pem())
    verifier = JwtVerifier(config, http, clock=clock)

    assert config.algorithms == ("ES256", "RS256")
    assert await verifier.verify(signer.token(kid=None)) == "user-1"
    assert await verifier.verify(signer.token(kid="any-kid")) == "user-1"
    assert await refusal(verifier, other.token()) == "signature"
    assert await refusal(verifier, signer.token(exp=int(time.time()) - 3600)) == "expired"
    assert jwks.requests == 0


async def test_public_key_mode_refuses_an_algorithm_the_key_cannot_serve(
    http: httpx.AsyncClient, clock: FakeClock, ec_keys: list[Signer], rsa_key: Signer
) -> None:
    config = JwtConfig(ISSUER, AUDIENCE, ("ES256", "RS256"), public_key=ec_keys[0].pem())
    verifier = JwtVerifier(config, http, clock=clock)

    assert await refusal(verifier, rsa_key.token()) == "algorithm"


async def test_public_key_mode_takes_an_eddsa_key(
    http: httpx.AsyncClient, clock: FakeClock
) -> None:
    signer = Signer("ed", "EdDSA", ed25519.Ed25519PrivateKey.generate())
    config = JwtConfig(ISSUER, AUDIENCE, ("EdDSA",), public_key=signer.pem())

    assert await JwtVerifier(config, http, clock=clock).verify(signer.token()) == "user-1"


# --- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("algorithms", "complaint"),
    [
        ([], "at least one"),
        ("", "at least one"),
        (["none"], "never"),
        (["RS256", "None"], "never"),
        (["HS256"], "symmetric"),
        (["RS256", "hs512"], "symmetric"),
        (["HS384"], "symmetric"),
        (["RS1"], "unknown"),
        (["ES256K"], "unknown"),
        (["RSA-OAEP"], "unknown"),
        ([""], "unknown"),
    ],
)
def test_check_algorithms_refuses(algorithms: list[str] | str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        check_algorithms(algorithms)


def test_check_algorithms_normalizes() -> None:
    assert check_algorithms(["rs256", " ES256 ", "RS256", "eddsa"]) == ("RS256", "ES256", "EdDSA")
    assert check_algorithms("RS256, PS512,") == ("RS256", "PS512")
    assert set(check_algorithms(sorted(ASYMMETRIC_ALGORITHMS))) == ASYMMETRIC_ALGORITHMS
    assert not any(name.startswith("HS") or name == "none" for name in ASYMMETRIC_ALGORITHMS)


def test_a_config_with_both_or_neither_key_source_is_refused(ec_keys: list[Signer]) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        JwtConfig(ISSUER, AUDIENCE, ("ES256",))
    with pytest.raises(ValueError, match="exactly one"):
        JwtConfig(
            ISSUER, AUDIENCE, ("ES256",), jwks_url="https://id.example.test/jwks",
            public_key=ec_keys[0].pem(),
        )  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "complaint"),
    [
        ({"issuer": " "}, "issuer"),
        ({"audience": ""}, "audience"),
        ({"algorithms": ("HS256",)}, "symmetric"),
        ({"jwks_url": "file:///etc/jwks.json"}, "http"),
        ({"jwks_url": "/jwks.json"}, "http"),
        ({"leeway": -1.0}, "leeway"),
        ({"jwks_cache_ttl": 0.0}, "jwks_cache_ttl"),
        ({"jwks_min_interval": float("nan")}, "jwks_min_interval"),
    ],
)
def test_a_config_with_a_bad_value_is_refused(changes: dict[str, Any], complaint: str) -> None:
    settings: dict[str, Any] = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "algorithms": ("ES256",),
        "jwks_url": "https://id.example.test/jwks.json",
    } | changes
    with pytest.raises(ValueError, match=complaint):
        JwtConfig(**settings)


def test_a_public_key_that_cannot_serve_is_refused(
    ec_keys: list[Signer], rsa_key: Signer, weak_rsa_key: Signer
) -> None:
    private_pem = rsa_key.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    for pem, complaint in [
        ("not a key", "PEM"),
        (private_pem, "PEM"),
        (weak_rsa_key.pem(), "2048"),
        (ec_keys[0].pem(), "none of the allowed"),
    ]:
        with pytest.raises(ValueError, match=complaint):
            JwtConfig(ISSUER, AUDIENCE, ("RS256",), public_key=pem)


# --- logs -----------------------------------------------------------------------------------


async def test_a_refusal_logs_its_reason_and_nothing_of_the_token(
    jwks: JwksServer,
    http: httpx.AsyncClient,
    clock: FakeClock,
    ec_keys: list[Signer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    jwks.keys = [ec_keys[0].jwk()]
    verifier = jwks_verifier(http, jwks, clock)
    subject = "carol-subject-7731"
    token = ec_keys[0].token(sub=subject, aud="another-api")

    with caplog.at_level(logging.DEBUG):
        assert await refusal(verifier, token) == "audience"
        assert await verifier.verify(ec_keys[0].token(sub=subject)) == subject

    records = [r for r in caplog.records if r.name.startswith("app.identity")]
    assert [(r.getMessage(), getattr(r, "reason", None)) for r in records] == [
        ("jwt.refused", "audience")
    ]
    logged = "\n".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records)
    for secret in (token, *token.split("."), subject, "another-api"):
        assert secret not in logged


async def test_a_failed_fetch_is_logged_without_the_response(
    jwks: JwksServer,
    http: httpx.AsyncClient,
    clock: FakeClock,
    ec_keys: list[Signer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    jwks.body = b'{"error": "secret-looking-detail"}'
    verifier = jwks_verifier(http, jwks, clock)

    with caplog.at_level(logging.INFO, logger="app.identity"):
        assert await refusal(verifier, ec_keys[0].token()) == "keys_unavailable"

    records = [r for r in caplog.records if r.name == "app.identity"]
    assert [(r.getMessage(), getattr(r, "error", None)) for r in records] == [
        ("jwks.fetch_failed", "not_a_jwks"),
        ("jwt.refused", None),
    ]
    assert "secret-looking-detail" not in "\n".join(str(vars(r)) for r in records)


# --- the sandbox's dev issuer ---------------------------------------------------------------


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxHandle]:
    with running_sandbox(clean_settings()) as handle:
        yield handle


async def test_a_token_from_the_sandbox_dev_issuer_verifies(
    sandbox: SandboxHandle, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    identity = f"{sandbox.base_url}/__sandbox/identity"
    config = JwtConfig(
        issuer=identity,
        audience="flinks-bff",
        algorithms=("ES256",),
        jwks_url=f"{identity}/jwks.json",
        jwks_min_interval=MIN_INTERVAL,
    )
    verifier = JwtVerifier(config, http, clock=clock)

    async def mint(sub: str) -> str:
        response = await http.post(f"{identity}/token", json={"sub": sub})
        assert response.status_code == 200, response.text
        assert response.json()["issuer"] == identity
        token: str = response.json()["token"]
        return token

    before = await mint("dev-user-1")
    assert await verifier.verify(before) == "dev-user-1"

    assert (await http.post(f"{identity}/rotate")).status_code == 200
    after = await mint("dev-user-2")
    clock.advance(MIN_INTERVAL)
    assert await verifier.verify(after) == "dev-user-2"
    assert await refusal(verifier, before) == "unknown_kid"
