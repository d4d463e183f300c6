"""How a caller is identified in `jwt` and `header` modes (framework-free: the API layer hands
in the headers it read; app/api/identity.py turns the answers into route dependencies)."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from app.errors import IdentityUnavailable, Unauthenticated
from app.identity.jwt import InvalidToken, JwtVerifier
from app.ratelimit import ClientAddress

log = logging.getLogger("app.identity")

AuthMode = Literal["session", "jwt", "header"]
# A proxy's user name: printable, no separators that would read as two values.
_PROXY_USER = re.compile(r"[^\x00-\x1f\x7f,;]{1,255}")
# RFC 6750 2.1: the scheme and a b64token; longer headers are no token (nor worth a regex).
_BEARER = re.compile(r"Bearer +([A-Za-z0-9._~+/-]+=*)", re.IGNORECASE)
MAX_AUTHORIZATION = 8192


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer …` header; None without one or for another
    scheme. Shared by the callers' JWTs and the host backend's service tokens."""
    if authorization is None or len(authorization) > MAX_AUTHORIZATION:
        return None
    match = _BEARER.fullmatch(authorization.strip())
    return match.group(1) if match else None


@dataclass(frozen=True, slots=True)
class Identities:
    """How this process tells who a caller is (built once, in the lifespan). `header` is the
    proxy's identity header; `proxies` says which peers are the trusted proxies."""

    mode: AuthMode
    verifier: JwtVerifier | None
    header: str
    proxies: ClientAddress

    async def identify(
        self, *, authorization: str | None, proxy_values: Sequence[str], peer: str | None
    ) -> str | None:
        """The caller's own identity in jwt or header mode: None when the request carries
        none; Unauthenticated when it carries one that cannot be believed."""
        if self.mode == "jwt":
            return await self._bearer(authorization)
        if self.mode == "header":
            return self._proxy_user(proxy_values, peer)
        return None

    async def _bearer(self, authorization: str | None) -> str | None:
        if authorization is None:
            return None
        token = bearer_token(authorization)
        if token is None or self.verifier is None:
            log.info("identity.refused", extra={"reason": "malformed"})
            raise _invalid_token()
        try:
            return await self.verifier.verify(token)
        except InvalidToken as exc:
            if exc.reason == "keys_unavailable":
                raise IdentityUnavailable(headers={"Retry-After": "30"}) from None
            raise _invalid_token() from None

    def _proxy_user(self, values: Sequence[str], peer: str | None) -> str | None:
        if not values:
            return None
        if not self.proxies.trusts(peer or ""):
            log.warning("identity.refused", extra={"reason": "header_from_untrusted_peer"})
            raise Unauthenticated("The identity header is accepted only from the trusted proxy.")
        if len(values) != 1 or not _PROXY_USER.fullmatch(values[0].strip()):
            raise Unauthenticated("The identity header does not name one user.")
        return values[0].strip()

    def missing(self) -> Unauthenticated:
        if self.mode == "jwt":
            return Unauthenticated(headers={"WWW-Authenticate": 'Bearer realm="flinks-bff"'})
        return Unauthenticated()


def _invalid_token() -> Unauthenticated:
    # The verifier has logged why (`jwt.refused`, the reason only).
    return Unauthenticated(
        "The bearer token is not valid.",
        headers={"WWW-Authenticate": 'Bearer realm="flinks-bff", error="invalid_token"'},
    )
