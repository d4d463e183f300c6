"""``/__sandbox/identity/*``: a development-only token issuer for the BFF's `BFF_AUTH=jwt` mode
(not part of Flinks).

It stands in for the host's identity provider: an ES256 key made at start-up and kept in
memory, its public half served as a JWKS, and tokens minted for any `sub` asked for. There is no
sign-in and no secret: anyone who can reach it gets a token, which is why it exists only with
the control API. The demo page on the BFF's origin fetches its token from here, so these routes
answer CORS requests from any origin (no credentials).

`iat`/`exp` are real UTC time, not the sandbox clock: the BFF checks them against its own.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route, Router

from app.sandbox.config import SandboxSettings
from app.sandbox.middleware import CONTROL_PREFIX
from app.sandbox.oauth import public_base

IDENTITY_PREFIX = f"{CONTROL_PREFIX}/identity"
ALGORITHM = "ES256"
DEFAULT_AUDIENCE = "flinks-bff"
DEFAULT_TTL_SECONDS = 3600
MAX_TTL_SECONDS = 86_400
NO_STORE = {"Cache-Control": "no-store"}


class TokenRequest(BaseModel):
    """The body of ``POST /__sandbox/identity/token``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    # Anything non-empty: the BFF's own limits (255 characters, no control characters) can be
    # tested with a token the issuer will gladly sign.
    sub: str = Field(min_length=1, max_length=4096)
    audience: str = Field(default=DEFAULT_AUDIENCE, min_length=1, max_length=512)
    ttl: int = Field(default=DEFAULT_TTL_SECONDS, ge=1, le=MAX_TTL_SECONDS)


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)

    @classmethod
    def generate(cls) -> SigningKey:
        private_key = ec.generate_private_key(ec.SECP256R1())
        return cls(kid=secrets.token_urlsafe(6), private_key=private_key)

    def public_jwk(self) -> dict[str, Any]:
        jwk = ECAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "alg": ALGORITHM, "use": "sig"}


class DevIdentity:
    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        self.key = SigningKey.generate()

    def routes(self) -> list[BaseRoute]:
        routes = Router(
            routes=[
                Route("/jwks.json", self.jwks, methods=["GET"]),
                Route("/token", self.token, methods=["POST"]),
                Route("/rotate", self.rotate, methods=["POST"]),
            ],
            redirect_slashes=False,
        )
        cors = CORSMiddleware(
            routes,
            allow_origins=["*"],
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type"],
            max_age=600,
        )
        return [Mount(IDENTITY_PREFIX, app=cors)]

    async def jwks(self, request: Request) -> Response:
        return JSONResponse({"keys": [self.key.public_jwk()]}, headers=NO_STORE)

    async def token(self, request: Request) -> Response:
        """``{"sub", "audience"?, "ttl"?}`` -> a signed token for that subject."""
        try:
            body = TokenRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            detail = exc.errors(include_url=False, include_context=False, include_input=False)
            return JSONResponse({"error": "invalid", "detail": detail}, 422)
        issuer = public_base(request, self.settings.public_url) + IDENTITY_PREFIX
        issued = int(datetime.now(UTC).timestamp())
        expires = issued + body.ttl
        key = self.key
        claims = {
            "iss": issuer,
            "sub": body.sub,
            "aud": body.audience,
            "iat": issued,
            "nbf": issued,
            "exp": expires,
            "jti": secrets.token_urlsafe(12),
        }
        token = jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid})
        return JSONResponse(
            {
                "token": token,
                "token_type": "Bearer",
                "expires_at": datetime.fromtimestamp(expires, UTC).isoformat(),
                "issuer": issuer,
                "audience": body.audience,
                "sub": body.sub,
            },
            headers=NO_STORE,
        )

    async def rotate(self, request: Request) -> Response:
        """A new key; the old one leaves the JWKS, so tokens it signed no longer verify."""
        self.key = SigningKey.generate()
        return JSONResponse({"kid": self.key.kid})
