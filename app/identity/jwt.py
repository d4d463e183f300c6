"""Who sent a request, from an `Authorization: Bearer <JWT>` the host's identity provider signed.

`JwtVerifier.verify(token)` answers the token's `sub` (the owner of flows and links) or raises
`InvalidToken` with a fixed one-word reason. PyJWT does every check (signature, `exp`/`nbf`/`iat`
with a leeway, `iss`, `aud`, required claims); this module only picks the key and refuses what
PyJWT would let a careless caller get wrong:

- the header's `alg` must be in the configured allow-list *and* fit the key it names (a JWK's own
  `alg`, its key type and curve), so a token cannot choose how a key is read. `none` and HMAC are
  refused outright: HS256 "signed" with a public key's PEM is the classic forgery;
- keys come from one PEM (`public_key`) or from the provider's JWKS (`jwks_url`). The JWKS is
  fetched with the app's shared httpx client (short timeout, no redirects, capped body), cached
  for `jwks_cache_ttl`, refetched on an unknown `kid` (key rotation) but never more often than
  `jwks_min_interval` (tokens with made-up kids must not turn into a request storm), and
  concurrent refetches share one request. A failed fetch keeps the keys already known;
- nothing of the token, its claims or its subject is logged, only the reason.

No web framework here: the API layer maps `InvalidToken` to its own 401 (or, for
`keys_unavailable`, 503: the provider is down, the caller's token may be fine).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias
from urllib.parse import urlsplit

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from app.clock import Clock, SystemClock

log = logging.getLogger("app.identity")

Reason: TypeAlias = Literal[
    "malformed",  # not a JWS we can read, or oversized
    "algorithm",  # alg not allowed, or not the named key's
    "unknown_kid",  # no key with that kid, even after a refetch (or one was not allowed yet)
    "no_kid",  # no kid while the key set holds several keys
    "keys_unavailable",  # the JWKS could not be fetched and no keys are known
    "signature",
    "expired",
    "not_yet_valid",  # nbf or iat in the future, beyond the leeway
    "issuer",
    "audience",
    "no_expiry",
    "no_subject",
    "bad_subject",  # not a string, empty, over 255 characters, or with control characters
    "key",  # the key cannot verify it (an RSA key under 2048 bits, say)
    "invalid",  # any other claim PyJWT refuses (a non-string jti, say)
]

ASYMMETRIC_ALGORITHMS: Final = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
_CANONICAL: Final = {name.lower(): name for name in ASYMMETRIC_ALGORITHMS}

# The key each algorithm reads: the JWK key type, and for EC the curve (RFC 7518 3.4).
_KEY_SHAPES: Final[dict[str, tuple[str, frozenset[str] | None]]] = {
    **{f"{family}{bits}": ("RSA", None) for family in ("RS", "PS") for bits in (256, 384, 512)},
    "ES256": ("EC", frozenset({"P-256"})),
    "ES384": ("EC", frozenset({"P-384"})),
    "ES512": ("EC", frozenset({"P-521"})),
    "EdDSA": ("OKP", frozenset({"Ed25519", "Ed448"})),
}
_EC_CURVES: Final = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
_MIN_RSA_BITS: Final = 2048

REQUIRED_CLAIMS: Final = ("exp", "iss", "aud", "sub")
MAX_SUBJECT_CHARS: Final = 255
# Far above any real ID token, far below what would make parsing one cost anything.
MAX_TOKEN_CHARS: Final = 16 * 1024
MAX_JWKS_BYTES: Final = 64 * 1024
# A JWKS is a few KB from a well-provisioned endpoint: a slow one must not hold requests long.
JWKS_TIMEOUT: Final = httpx.Timeout(3.0, connect=2.0)
JWKS_DEADLINE_SECONDS: Final = 5.0

PublicKey: TypeAlias = RSAPublicKey | EllipticCurvePublicKey | Ed25519PublicKey | Ed448PublicKey


class InvalidToken(Exception):
    """The bearer token cannot be believed. `reason` is a short, fixed word for logs and metrics
    (see `Reason`); never the token or its claims."""

    def __init__(self, reason: Reason) -> None:
        super().__init__(reason)
        self.reason: Reason = reason


def check_algorithms(algorithms: Iterable[str]) -> tuple[str, ...]:
    """The allow-list, normalized: canonical names ("rs256" -> "RS256"), in the order given,
    without repeats. A string is read as a comma-separated list. Raises ValueError for an empty
    list, `none`, any HS* (a verifier holding a public key must never read it as an HMAC secret)
    or a name that is not an asymmetric JOSE signature algorithm."""
    names = algorithms.split(",") if isinstance(algorithms, str) else list(algorithms)
    normalized: list[str] = []
    for raw in names:
        name = raw.strip()
        if not name and isinstance(algorithms, str):
            continue  # "RS256, ES256," from an environment variable
        lowered = name.lower()
        if lowered == "none":
            raise ValueError("'none' is never an allowed JWT algorithm")
        if lowered.startswith("hs"):
            raise ValueError(
                f"{name!r} is symmetric (HMAC): only asymmetric algorithms are allowed, so a "
                "public key can never be used as an HMAC secret"
            )
        canonical = _CANONICAL.get(lowered)
        if canonical is None:
            allowed = ", ".join(sorted(ASYMMETRIC_ALGORITHMS))
            raise ValueError(f"unknown JWT algorithm {name!r} (allowed: {allowed})")
        if canonical not in normalized:
            normalized.append(canonical)
    if not normalized:
        raise ValueError("at least one JWT algorithm must be allowed")
    return tuple(normalized)


@dataclass(frozen=True, slots=True)
class JwtConfig:
    """How tokens are checked. Validated when built (a ValueError says what is wrong), so a
    settings validator can build one to check the configuration; `algorithms` is normalized."""

    issuer: str
    audience: str
    algorithms: tuple[str, ...]  # allow-list, e.g. ("RS256", "ES256")
    jwks_url: str | None = None  # exactly one of jwks_url / public_key
    public_key: str | None = None  # PEM
    leeway: float = 30.0  # seconds of clock skew allowed on exp/nbf/iat
    jwks_cache_ttl: float = 300.0  # a fetched JWKS is used this long
    jwks_min_interval: float = 30.0  # never refetch more often than this (unknown-kid storms)

    def __post_init__(self) -> None:
        if not self.issuer.strip():
            raise ValueError("the JWT issuer must not be empty")
        if not self.audience.strip():
            raise ValueError("the JWT audience must not be empty")
        object.__setattr__(self, "algorithms", check_algorithms(self.algorithms))
        if (self.jwks_url is None) == (self.public_key is None):
            raise ValueError("exactly one of a JWKS URL and a public key must be given")
        if self.jwks_url is not None:
            parts = urlsplit(self.jwks_url)
            if parts.scheme not in ("https", "http") or not parts.hostname:
                raise ValueError("the JWKS URL must be an absolute http(s) URL")
        if self.public_key is not None:
            key = load_public_key(self.public_key)
            if not any(_fits(key, name) for name in self.algorithms):
                raise ValueError(
                    "the public key fits none of the allowed algorithms "
                    f"({', '.join(self.algorithms)})"
                )
        for name in ("leeway", "jwks_cache_ttl", "jwks_min_interval"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0 or (name == "jwks_cache_ttl" and value == 0):
                raise ValueError(f"{name} must be a finite number of seconds >= 0 (ttl > 0)")


def load_public_key(pem: str) -> PublicKey:
    """An RSA (>= 2048 bits), EC (P-256/384/521) or Ed25519/Ed448 public key from PEM text;
    ValueError for anything else (a private key, a certificate, HMAC material)."""
    try:
        key = load_pem_public_key(pem.strip().encode())
    except (ValueError, TypeError) as exc:
        raise ValueError("the public key is not a PEM-encoded public key") from exc
    usable = _usable(key)
    if usable is None:
        raise ValueError("the public key is not an RSA (>= 2048 bits), EC or EdDSA key")
    return usable


@dataclass(frozen=True, slots=True)
class _Key:
    kid: str | None
    alg: str | None  # the JWK's own `alg`, when it names one
    public_key: PublicKey

    def accepts(self, alg: str) -> bool:
        return (self.alg is None or self.alg == alg) and _fits(self.public_key, alg)


class JwtVerifier:
    """Checks bearer tokens against one issuer's keys. One per app (it caches the JWKS), used
    from one event loop; `aclose()` ends a JWKS fetch still running."""

    def __init__(
        self, config: JwtConfig, http: httpx.AsyncClient, *, clock: Clock | None = None
    ) -> None:
        self._config = config
        self._http = http
        self._clock = clock or SystemClock()
        self._static: _Key | None = None
        if config.public_key is not None:
            self._static = _Key(None, None, load_public_key(config.public_key))
        self._jwks_url = config.jwks_url or ""
        self._keys: tuple[_Key, ...] | None = None  # None: no JWKS fetched yet
        self._fetched_at = 0.0
        self._last_attempt: float | None = None
        self._generation = 0  # counts finished fetch attempts
        self._inflight: asyncio.Task[None] | None = None

    async def verify(self, token: str) -> str:
        """The token's `sub`, once its signature, issuer, audience and times check out."""
        try:
            return await self._verify(token)
        except InvalidToken as refused:
            log.info("jwt.refused", extra={"reason": refused.reason})
            raise

    async def aclose(self) -> None:
        task, self._inflight = self._inflight, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _verify(self, token: str) -> str:
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            raise InvalidToken("malformed")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            # `from None` here and below: PyJWT's messages may quote the token's content.
            raise InvalidToken("malformed") from None
        alg = header.get("alg")
        kid = header.get("kid")
        if not isinstance(alg, str) or alg not in self._config.algorithms:
            raise InvalidToken("algorithm")
        if kid is not None and not isinstance(kid, str):
            raise InvalidToken("malformed")
        key = await self._key(kid, alg)
        config = self._config
        try:
            claims = jwt.decode(
                token,
                key.public_key,
                algorithms=list(config.algorithms),
                audience=config.audience,
                issuer=config.issuer,
                leeway=config.leeway,
                options={"require": list(REQUIRED_CLAIMS), "enforce_minimum_key_length": True},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(_reason(exc)) from None
        return _subject(claims)

    async def _key(self, kid: str | None, alg: str) -> _Key:
        if self._static is not None:
            if not self._static.accepts(alg):
                raise InvalidToken("algorithm")
            return self._static
        generation = self._generation
        if self._keys is None or self._stale():
            await self._refresh()
        key = self._select(kid, alg)
        if key is None and self._generation == generation:
            # Not in the keys we had when this token came: the provider may have rotated.
            await self._refresh()
            key = self._select(kid, alg)
        if key is None:
            raise InvalidToken("unknown_kid")
        return key

    def _stale(self) -> bool:
        return self._clock.monotonic() - self._fetched_at >= self._config.jwks_cache_ttl

    def _select(self, kid: str | None, alg: str) -> _Key | None:
        """The key the token names (None: not in the set), or InvalidToken when it names one
        that cannot verify it."""
        keys = self._keys
        if keys is None:
            raise InvalidToken("keys_unavailable")
        if kid is None:
            if len(keys) != 1:
                raise InvalidToken("no_kid")
            candidates: Sequence[_Key] = keys
        else:
            candidates = [key for key in keys if key.kid == kid]
            if not candidates:
                return None
        for key in candidates:
            if key.accepts(alg):
                return key
        raise InvalidToken("algorithm")

    async def _refresh(self) -> None:
        """Fetches the JWKS unless one was tried less than `jwks_min_interval` ago; a fetch
        already running is joined, not repeated. It runs as its own task, so a request that
        gives up (a client gone) does not cancel it for the others waiting on it."""
        if self._inflight is None:
            now = self._clock.monotonic()
            last = self._last_attempt
            if last is not None and now - last < self._config.jwks_min_interval:
                return
            self._last_attempt = now
            self._inflight = asyncio.create_task(self._fetch_and_keep(now), name="jwks-fetch")
        await asyncio.shield(self._inflight)

    async def _fetch_and_keep(self, started: float) -> None:
        try:
            keys = await self._fetch()
        except _FetchFailed as failed:
            # The keys already known stay in use; the next try waits for jwks_min_interval.
            log.warning("jwks.fetch_failed", extra={"error": failed.what})
        else:
            self._keys = keys
            self._fetched_at = started
        finally:
            self._generation += 1
            self._inflight = None

    async def _fetch(self) -> tuple[_Key, ...]:
        try:
            async with (
                asyncio.timeout(JWKS_DEADLINE_SECONDS),
                self._http.stream(
                    "GET",
                    self._jwks_url,
                    headers={"Accept": "application/jwk-set+json, application/json"},
                    timeout=JWKS_TIMEOUT,
                    follow_redirects=False,
                ) as response,
            ):
                if response.status_code != 200:
                    raise _FetchFailed(f"status_{response.status_code}")
                body = await _read_capped(response)
        except TimeoutError:
            raise _FetchFailed("timeout") from None
        except httpx.HTTPError as exc:
            raise _FetchFailed(type(exc).__name__) from None
        try:
            document = json.loads(body)
        except ValueError:
            raise _FetchFailed("not_json") from None
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise _FetchFailed("not_a_jwks")
        keys = _load_keys(document["keys"])
        if not keys:
            raise _FetchFailed("no_usable_keys")
        return keys


class _FetchFailed(Exception):
    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


async def _read_capped(response: httpx.Response) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_JWKS_BYTES:
        raise _FetchFailed("too_large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > MAX_JWKS_BYTES:
            raise _FetchFailed("too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def _load_keys(entries: list[Any]) -> tuple[_Key, ...]:
    """The signature keys PyJWT can load; any other entry is skipped: encryption keys, HMAC
    (`oct`) keys, keys for an algorithm we never accept, weak RSA keys, broken entries."""
    keys: list[_Key] = []
    for entry in entries:
        if not isinstance(entry, Mapping) or not _is_signature_key(entry):
            continue
        try:
            loaded = jwt.PyJWK(dict(entry), algorithm=_loader_algorithm(entry))
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            continue
        public_key = _usable(loaded.key)
        if public_key is None:
            continue
        kid = entry.get("kid")
        alg = entry.get("alg")
        keys.append(_Key(kid if isinstance(kid, str) else None, alg, public_key))
    return tuple(keys)


def _is_signature_key(entry: Mapping[str, Any]) -> bool:
    if entry.get("use", "sig") != "sig":
        return False
    ops = entry.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        return False
    alg = entry.get("alg")
    return entry.get("kty") in ("RSA", "EC", "OKP") and (alg is None or alg in _KEY_SHAPES)


def _loader_algorithm(entry: Mapping[str, Any]) -> str | None:
    """Which PyJWT algorithm reads this JWK's key material; `_Key.accepts` then decides which
    algorithms it verifies (an RSA key without `alg` serves RS* and PS* alike)."""
    alg = entry.get("alg")
    if isinstance(alg, str):
        return alg
    kty, crv = entry.get("kty"), entry.get("crv")
    if kty == "RSA":
        return "RS256"
    if kty == "OKP":
        return "EdDSA"
    if kty == "EC" and isinstance(crv, str):
        return {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}.get(crv)
    return None


def _usable(key: object) -> PublicKey | None:
    """The public half of a key we verify with, or None (a JWKS may wrongly carry the private
    part: only the public one is kept)."""
    public = getattr(key, "public_key", None)
    if callable(public) and not isinstance(key, PublicKey):
        key = public()
    if isinstance(key, RSAPublicKey):
        return key if key.key_size >= _MIN_RSA_BITS else None
    if isinstance(key, EllipticCurvePublicKey):
        return key if key.curve.name in _EC_CURVES else None
    if isinstance(key, Ed25519PublicKey | Ed448PublicKey):
        return key
    return None


def _fits(key: PublicKey, alg: str) -> bool:
    shape = _KEY_SHAPES.get(alg)
    if shape is None:
        return False
    kty, curves = shape
    if isinstance(key, RSAPublicKey):
        return kty == "RSA"
    if isinstance(key, EllipticCurvePublicKey):
        return kty == "EC" and curves is not None and _EC_CURVES.get(key.curve.name) in curves
    name = "Ed25519" if isinstance(key, Ed25519PublicKey) else "Ed448"
    return kty == "OKP" and curves is not None and name in curves


_MISSING: Final[dict[str, Reason]] = {
    "sub": "no_subject",
    "exp": "no_expiry",
    "iss": "issuer",
    "aud": "audience",
}


def _reason(exc: jwt.PyJWTError) -> Reason:
    """PyJWT's refusal as one of our fixed words."""
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return _MISSING.get(exc.claim, "invalid")
    reasons: tuple[tuple[type[jwt.PyJWTError], Reason], ...] = (
        (jwt.ExpiredSignatureError, "expired"),
        (jwt.ImmatureSignatureError, "not_yet_valid"),
        (jwt.InvalidIssuerError, "issuer"),
        (jwt.InvalidAudienceError, "audience"),
        (jwt.exceptions.InvalidSubjectError, "bad_subject"),
        (jwt.InvalidAlgorithmError, "algorithm"),
        (jwt.InvalidSignatureError, "signature"),
        (jwt.InvalidKeyError, "key"),
        (jwt.DecodeError, "malformed"),
    )
    for kind, reason in reasons:
        if isinstance(exc, kind):
            return reason
    return "invalid"


def _subject(claims: Mapping[str, Any]) -> str:
    sub = claims.get("sub")
    if (
        not isinstance(sub, str)
        or not sub
        or len(sub) > MAX_SUBJECT_CHARS
        or any(unicodedata.category(char) == "Cc" for char in sub)
    ):
        raise InvalidToken("bad_subject")
    return sub
