"""Every knob of the BFF, typed and validated, read from the environment and an optional `.env`."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from functools import cached_property
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    HttpUrl,
    PositiveInt,
    SecretStr,
    UrlConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import MultiHostUrl
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.flows.records import INSTITUTION_ID
from app.identity.jwt import check_algorithms, load_public_key
from app.outbound import Transport, private_address

# One server (redis://, rediss://, unix://), a Redis Cluster (redis+cluster://h:p[,h:p...]) or a
# Sentinel-watched primary (redis+sentinel://h:p[,h:p...]/service_name): app/store.py connects.
RedisUrl = Annotated[
    MultiHostUrl,
    UrlConstraints(allowed_schemes=["redis", "rediss", "unix", "redis+cluster", "redis+sentinel"]),
]
CsvList = Annotated[tuple[str, ...], NoDecode]

DEV_PUBLIC_URL = "http://127.0.0.1:8000"
DEV_RETURN_URLS = ("http://127.0.0.1:8000/", "http://localhost:8000/")
DEV_CORS_ORIGINS = ("http://127.0.0.1:8000", "http://localhost:8000")
# Institution ids Flinks' SDKs know (flinks-contract.md 1.3); FLINKS_INSTITUTIONS narrows it to
# the ones enabled on your instance for the OAuth flow.
DEFAULT_INSTITUTIONS = (
    "ATB", "BMO", "CIBC", "CoastCapital", "Desjardins", "EQBank", "FlinksCapital", "HSBC",
    "Laurentienne", "Meridian", "National", "PC", "RBC", "Scotia", "Simplii", "TD", "Tangerine",
    "Vancity",
)  # fmt: skip


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,63}")
# Schemes that are not an app's: a browser would run or open them itself.
_RESERVED_SCHEMES = frozenset({"http", "https", "javascript", "data", "file", "about", "blob"})


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class ConfigurationError(Exception):
    """The configuration cannot be used; `problems` names each variable and what is wrong."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))

    def report(self) -> str:
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        return f"flinks-bff: the configuration is not usable:\n{lines}"


class Settings(BaseSettings):
    """Each field's name is its environment variable's name, lower-cased (BFF_PUBLIC_URL is
    `bff_public_url`); values derived from several variables are properties below."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,  # `VAR=` (as in .env.example) means unset
        extra="ignore",
        frozen=True,
    )

    bff_env: Literal["development", "production"] = Field("development")
    bff_public_url: HttpUrl = Field(HttpUrl(DEV_PUBLIC_URL))
    bff_return_urls: CsvList = Field(DEV_RETURN_URLS)
    bff_cors_origins: CsvList = Field(DEV_CORS_ORIGINS)
    bff_encryption_key: SecretStr | None = Field(None)
    bff_state_ttl: PositiveInt = Field(600)
    bff_flow_ttl: PositiveInt = Field(1800)
    bff_login_ttl: PositiveInt = Field(86400)
    bff_session_ttl: PositiveInt = Field(86400)
    # A native app's one-time handoff code lives this long (seconds).
    bff_handoff_ttl: int = Field(120, ge=10, le=600)
    # Custom URL schemes a native app's return URL may use (e.g. com.example.app): refused unless
    # named here, because any app can register a scheme; prefer https App/Universal Links.
    bff_return_url_schemes: CsvList = Field(())
    bff_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO")
    # json: one JSON object per line (production, log pipelines); console: aligned, readable
    # lines for a terminal (what `flinks-bff dev` uses unless told otherwise).
    bff_log_format: Literal["json", "console"] = Field("json")
    bff_host: str = Field("127.0.0.1")
    bff_port: int = Field(8000, ge=1, le=65535)
    bff_workers: PositiveInt = Field(1)

    bff_rate_limit_window: PositiveInt = Field(60)
    bff_rate_limit_ip: int = Field(120, ge=0)
    bff_rate_limit_session: int = Field(30, ge=0)
    bff_trusted_proxies: CsvList = Field(())
    bff_rate_limit_ipv6_prefix: int = Field(64, ge=16, le=128)

    # What one client may send, and how much work one process takes on (app/api/edge.py and
    # app/http_server.py).
    bff_max_body_bytes: PositiveInt = Field(64 * 1024)
    bff_max_header_bytes: int = Field(32 * 1024, ge=1024)
    bff_max_headers: PositiveInt = Field(100)
    bff_request_timeout: float = Field(10.0, gt=0, le=300)
    bff_max_inflight: PositiveInt = Field(1024)
    # The outbound client's transport (app/outbound/transport.py): aiohttp's pool, measured the
    # cheaper (bench/README.md), or httpx's own httpcore.
    bff_http_transport: Transport = Field("aiohttp")

    # How long a browser request waits for Flinks before it answers the flow as `authorizing`
    # (the call goes on in the background), and how long a replica's claim on a flow it is
    # asking Flinks about lasts unless renewed (a flow whose replica died is taken over then).
    bff_authorize_wait: float = Field(5.0, ge=0, le=60)
    bff_lease_ttl: float = Field(20.0, ge=1, le=600)

    # Who the caller is (app/api/identity.py): `session` (an anonymous HttpOnly cookie, the
    # development default), `jwt` (Authorization: Bearer, owner = `sub`) or `header` (a user
    # name set by an authenticating proxy in BFF_TRUSTED_PROXIES). Production names one.
    bff_auth: Literal["session", "jwt", "header"] | None = Field(None)
    bff_jwt_jwks_url: HttpUrl | None = Field(None)
    bff_jwt_public_key: str | None = Field(None)  # a PEM public key
    bff_jwt_issuer: str | None = Field(None)
    bff_jwt_audience: str | None = Field(None)
    bff_jwt_algorithms: CsvList = Field(("RS256", "ES256"))
    bff_jwt_leeway: float = Field(30.0, ge=0, le=300)
    bff_auth_header: str = Field("X-Auth-Request-User", pattern=r"^[A-Za-z0-9-]{1,64}$")
    # Links live this long unless deleted; account data is cached (encrypted) this long.
    bff_link_ttl: PositiveInt = Field(90 * 86400)
    bff_data_ttl: PositiveInt = Field(900)
    # The host backend's tokens for /internal/v1: SHA-256 hex digests, never the tokens.
    bff_service_tokens: CsvList = Field(())

    redis_url: RedisUrl | None = Field(None)
    # A redis:// or rediss:// REDIS_URL (one host or several) names a Redis Cluster's nodes.
    redis_cluster: bool = Field(False)
    bff_allow_plaintext_redis: bool = Field(False)

    flinks_instance: str = Field("toolbox", pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    flinks_api_url: HttpUrl | None = Field(None)
    flinks_connect_url: HttpUrl | None = Field(None)
    flinks_customer_id: str | None = Field(None, pattern=r"^[A-Za-z0-9-]{1,64}$")
    flinks_secret_key: SecretStr | None = Field(None)
    flinks_api_key: SecretStr | None = Field(None)
    flinks_demo: bool = Field(False)
    # Connect completes with a cached /Authorize (Flinks' documented follow-up) or a live one.
    flinks_connect_authorize: Literal["cached", "live"] = Field("cached")
    flinks_timeout: float = Field(5.0, gt=0, le=60)
    # A live /Authorize runs up to 210 s before Flinks dispatches it (202): it runs in the
    # background, so it may take that long without holding a browser request.
    flinks_authorize_timeout: float = Field(240.0, gt=0, le=300)
    flinks_deadline: float = Field(10.0, gt=0, le=300)
    flinks_authorize_deadline: float = Field(250.0, gt=0, le=600)
    flinks_breaker_failures: PositiveInt = Field(5)
    flinks_breaker_reset: PositiveInt = Field(10)
    flinks_institutions: CsvList = Field(DEFAULT_INSTITUTIONS, min_length=1)
    # Flinks' webhooks in (POST /v1/webhooks/flinks): off unless turned on; the HMAC secret, the
    # header it comes in (the legacy docs' name; a newer guide uses X-Flinks-Signature) and the
    # largest body read.
    flinks_webhooks: bool = Field(False)
    flinks_webhook_secret: SecretStr | None = Field(None)
    flinks_webhook_header: str = Field("flinks-authenticity-key", pattern=r"^[A-Za-z0-9-]{1,64}$")
    flinks_webhook_max_bytes: int = Field(5 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    # The BFF's own events out to the host backend (app/flows/events.py): off without a URL.
    # The secret is Standard Webhooks' `whsec_<base64 key>`. Each event is retried for
    # BFF_WEBHOOK_MAX_AGE seconds, then dead-lettered; one attempt lasts BFF_WEBHOOK_TIMEOUT.
    # Production refuses loopback, link-local and private destinations unless allowed.
    bff_webhook_url: HttpUrl | None = Field(None)
    bff_webhook_secret: SecretStr | None = Field(None)
    bff_webhook_max_age: int = Field(24 * 3600, ge=60, le=30 * 86400)
    bff_webhook_timeout: float = Field(10.0, gt=0, le=60)
    bff_webhook_allow_private: bool = Field(False)

    @field_validator(
        "bff_return_urls",
        "bff_cors_origins",
        "bff_trusted_proxies",
        "flinks_institutions",
        "bff_jwt_algorithms",
        "bff_service_tokens",
        "bff_return_url_schemes",
        mode="before",
    )
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("bff_return_urls")
    @classmethod
    def _absolute_urls(cls, urls: tuple[str, ...]) -> tuple[str, ...]:
        for url in urls:
            parts = urlsplit(url)
            web = parts.scheme in ("http", "https")
            if (web and not parts.hostname) or not _SCHEME.fullmatch(parts.scheme):
                raise ValueError(f"{url!r} is not an absolute http(s) URL")
            if parts.fragment or parts.username or parts.password:
                raise ValueError(f"{url!r} must have no fragment and no user info")
        return urls

    @field_validator("bff_return_url_schemes")
    @classmethod
    def _custom_schemes(cls, schemes: tuple[str, ...]) -> tuple[str, ...]:
        for scheme in schemes:
            if not _SCHEME.fullmatch(scheme) or scheme.lower() in _RESERVED_SCHEMES:
                raise ValueError(f"{scheme!r} is not a custom URL scheme like com.example.app")
        return tuple(scheme.lower() for scheme in schemes)

    @field_validator("bff_cors_origins")
    @classmethod
    def _bare_origins(cls, origins: tuple[str, ...]) -> tuple[str, ...]:
        for origin in origins:
            if origin == "*" or _origin(origin) != origin.rstrip("/") or "://" not in origin:
                raise ValueError(f"{origin!r} is not an exact origin like https://app.example.com")
        return tuple(origin.rstrip("/") for origin in origins)

    @field_validator("flinks_institutions")
    @classmethod
    def _institution_ids(cls, ids: tuple[str, ...]) -> tuple[str, ...]:
        for institution in ids:
            if not INSTITUTION_ID.fullmatch(institution):
                raise ValueError(f"{institution!r} is not an institution id like FlinksCapital")
        return ids

    @field_validator("bff_trusted_proxies")
    @classmethod
    def _networks(cls, proxies: tuple[str, ...]) -> tuple[str, ...]:
        for proxy in proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError as exc:
                raise ValueError(f"{proxy!r} is not an IP address or CIDR network") from exc
        return proxies

    @field_validator("bff_service_tokens")
    @classmethod
    def _digests(cls, digests: tuple[str, ...]) -> tuple[str, ...]:
        for index, digest in enumerate(digests, start=1):
            if not re.fullmatch(r"[0-9a-fA-F]{64}", digest):
                raise ValueError(
                    f"entry {index} is not a SHA-256 hex digest (64 hex digits); store the "
                    "digest of a token, never the token: printf %s TOKEN | sha256sum"
                )
        return tuple(digest.lower() for digest in digests)

    @field_validator("bff_jwt_algorithms")
    @classmethod
    def _algorithms(cls, algorithms: tuple[str, ...]) -> tuple[str, ...]:
        return check_algorithms(algorithms)

    @field_validator("bff_encryption_key")
    @classmethod
    def _key_is_32_bytes(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None:
            decode_key(key)
        return key

    def _url_problems(self) -> list[str]:
        """Base URLs are joined with paths, so user-info, a query or a fragment in one would end
        up in the middle of every URL built from it (e.g. the OAuth redirect_uri)."""
        problems = [
            f"{name} must have no user-info, query or fragment"
            for name, url in (
                ("BFF_PUBLIC_URL", str(self.bff_public_url)),
                ("FLINKS_API_URL", _optional(self.flinks_api_url)),
                ("FLINKS_CONNECT_URL", _optional(self.flinks_connect_url)),
            )
            if url and _has_extras(url)
        ]
        problems += [
            f"BFF_RETURN_URLS entry {index} must have no user-info, query or fragment"
            for index, url in enumerate(self.bff_return_urls, start=1)
            if _has_extras(url)
        ]
        return problems

    @model_validator(mode="after")
    def _usable(self) -> Settings:
        """Every problem at once, so one failed start names every variable to fix."""
        problems = (
            self._url_problems()
            + self._auth_problems()
            + self._scheme_problems()
            + self._webhook_problems()
        )
        if self.is_production:
            problems += self._production_problems()
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _scheme_problems(self) -> list[str]:
        return [
            f"BFF_RETURN_URLS entry {url!r} uses a custom scheme; name it in "
            "BFF_RETURN_URL_SCHEMES to allow it (an https App Link or Universal Link is safer)"
            for url in self.bff_return_urls
            if urlsplit(url).scheme not in ("http", "https", *self.bff_return_url_schemes)
        ]

    def _webhook_problems(self) -> list[str]:
        problems = []
        if self.is_production and self.flinks_webhooks and self.flinks_webhook_secret is None:
            problems.append(
                "FLINKS_WEBHOOKS=true needs FLINKS_WEBHOOK_SECRET in production (unsigned "
                "deliveries would be believed)"
            )
        return problems + self._events_out_problems()

    def _events_out_problems(self) -> list[str]:
        url = self.bff_webhook_url
        if url is None:
            return []
        problems = []
        secret = self.bff_webhook_secret
        if secret is None:
            problems.append(
                "BFF_WEBHOOK_URL needs BFF_WEBHOOK_SECRET (whsec_ and a base64 key of 24 bytes or "
                "more; make one with: python -c 'import secrets,base64;"
                'print("whsec_"+base64.b64encode(secrets.token_bytes(32)).decode())\')'
            )
        elif not _webhook_secret_usable(secret.get_secret_value()):
            problems.append(
                "BFF_WEBHOOK_SECRET must be whsec_ followed by a base64 key of 24 bytes or more"
            )
        parts = urlsplit(str(url))
        if parts.username is not None or parts.password is not None or parts.fragment:
            # Credentials belong in the signature's secret, not in a URL that logs may show.
            problems.append("BFF_WEBHOOK_URL must have no user-info or fragment")
        if self.is_production:
            if url.scheme != "https":
                problems.append("BFF_WEBHOOK_URL must be https in production")
            if not self.bff_webhook_allow_private and private_address(url.host or ""):
                problems.append(
                    "BFF_WEBHOOK_URL names a loopback, link-local or private address; set "
                    "BFF_WEBHOOK_ALLOW_PRIVATE=true if the host backend really lives there"
                )
        return problems

    def _auth_problems(self) -> list[str]:
        problems = []
        if self.auth_mode == "jwt":
            if (self.bff_jwt_jwks_url is None) == (self.bff_jwt_public_key is None):
                problems.append(
                    "BFF_AUTH=jwt needs exactly one of BFF_JWT_JWKS_URL and BFF_JWT_PUBLIC_KEY"
                )
            if self.bff_jwt_public_key is not None:
                try:
                    load_public_key(self.bff_jwt_public_key)
                except ValueError as exc:
                    problems.append(f"BFF_JWT_PUBLIC_KEY: {exc}")
            if not self.bff_jwt_issuer:
                problems.append("BFF_AUTH=jwt needs BFF_JWT_ISSUER")
            if not self.bff_jwt_audience:
                problems.append("BFF_AUTH=jwt needs BFF_JWT_AUDIENCE")
            jwks = self.bff_jwt_jwks_url
            if self.is_production and jwks is not None and jwks.scheme != "https":
                problems.append("BFF_JWT_JWKS_URL must be https in production")
        if self.auth_mode == "header" and not self.bff_trusted_proxies:
            problems.append(
                "BFF_AUTH=header needs BFF_TRUSTED_PROXIES: the identity header is believed only "
                "from the authenticating proxy"
            )
        return problems

    def _production_problems(self) -> list[str]:
        problems = []
        if self.bff_auth is None:
            problems.append(
                "BFF_AUTH is not set: name how callers are identified (session, jwt or header)"
            )
        if self.redis_url is None:
            problems.append("REDIS_URL is not set (production needs a real Redis)")
        if not self.flinks_customer_id:
            problems.append("FLINKS_CUSTOMER_ID is not set")
        if self.flinks_secret_key is None or not self.flinks_secret_key.get_secret_value():
            problems.append("FLINKS_SECRET_KEY is not set")
        if self.bff_public_url.scheme != "https":
            problems.append("BFF_PUBLIC_URL must be an https URL")
        if self.bff_encryption_key is None:
            problems.append(
                "BFF_ENCRYPTION_KEY is not set (32 random bytes, base64url; "
                "make one with: python -c 'import secrets,base64;"
                "print(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())')"
            )
        web_return_urls = tuple(
            url
            for url in self.bff_return_urls
            if urlsplit(url).scheme not in self.bff_return_url_schemes
        )
        problems += _https_only("BFF_RETURN_URLS", web_return_urls, DEV_RETURN_URLS)
        problems += _https_only("BFF_CORS_ORIGINS", self.bff_cors_origins, DEV_CORS_ORIGINS)
        for name, url, carries in (
            ("FLINKS_API_URL", self.flinks_base_url, "the secret key"),
            ("FLINKS_CONNECT_URL", self.connect_page_url, "authorize tokens"),
        ):
            if not url.startswith("https://"):
                problems.append(f"{name} must be https ({carries} would travel in clear text)")
        if self.flinks_demo:
            problems.append("FLINKS_DEMO must not be true (it shows Flinks' test institutions)")
        if self.redis_url is not None and not (
            self.bff_allow_plaintext_redis or _redis_is_private(self.redis_url)
        ):
            problems.append(
                "REDIS_URL must be rediss:// (TLS), a unix socket or a loopback address "
                "(redis+cluster:// and redis+sentinel:// have no TLS here: loopback hosts only); "
                "set BFF_ALLOW_PLAINTEXT_REDIS=true to accept plain Redis on this network"
            )
        return problems

    @property
    def is_production(self) -> bool:
        return self.bff_env == "production"

    @property
    def auth_mode(self) -> Literal["session", "jwt", "header"]:
        return self.bff_auth or "session"

    @cached_property
    def flinks_base_url(self) -> str:
        if self.flinks_api_url is not None:
            return str(self.flinks_api_url).rstrip("/")
        return f"https://{self.flinks_instance}-api.private.fin.ag"

    @cached_property
    def connect_page_url(self) -> str:
        if self.flinks_connect_url is not None:
            return str(self.flinks_connect_url)
        return f"https://{self.flinks_instance}-iframe.private.fin.ag/v2/"

    @cached_property
    def connect_origin(self) -> str:
        return _origin(self.connect_page_url)

    @property
    def flinks_configured(self) -> bool:
        return bool(self.flinks_customer_id and self.flinks_secret_key)

    @cached_property
    def oauth_redirect_uri(self) -> str:
        """The one redirect_uri registered with Flinks; never derived from request headers."""
        return str(self.bff_public_url).rstrip("/") + "/v1/oauth/callback"

    @cached_property
    def api_origins(self) -> frozenset[str]:
        """Origins allowed to call the API: BFF_CORS_ORIGINS and the BFF's own."""
        return frozenset(self.bff_cors_origins) | {_origin(str(self.bff_public_url))}

    @property
    def secure_cookies(self) -> bool:
        return self.bff_public_url.scheme == "https"


def _https_only(name: str, urls: tuple[str, ...], dev_default: tuple[str, ...]) -> list[str]:
    if urls == dev_default:
        return [f"{name} is not set (the development default is plain http on localhost)"]
    return [f"{name} entry {url!r} must be https" for url in urls if not url.startswith("https://")]


def _optional(url: object | None) -> str:
    return "" if url is None else str(url)


def _has_extras(url: str) -> bool:
    parts = urlsplit(url)
    return bool(parts.username or parts.password or "@" in parts.netloc or parts.query) or (
        parts.fragment != "" or url.endswith("#")
    )


def _webhook_secret_usable(secret: str) -> bool:
    """Standard Webhooks' form: `whsec_` and the base64 of a key of 24 bytes or more."""
    if not secret.startswith("whsec_"):
        return False
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        return False
    return len(key) >= 24


def _redis_is_private(url: MultiHostUrl) -> bool:
    """TLS, a unix socket, or only loopback hosts (every host of a cluster or sentinel URL)."""
    if url.scheme in ("rediss", "unix"):
        return True
    hosts = [(h["host"] or "").strip("[]") for h in url.hosts()]
    return bool(hosts) and all(_is_loopback(host) for host in hosts)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# A key with this few distinct byte values was typed or zero-filled, not drawn at random (32
# random bytes have ~30 distinct values; fewer than 16 happens with probability < 1e-12).
MIN_DISTINCT_KEY_BYTES = 16


def decode_key(key: SecretStr) -> bytes:
    raw = key.get_secret_value().strip()
    try:
        decoded = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("BFF_ENCRYPTION_KEY is not valid base64url") from exc
    if len(decoded) != 32:
        raise ValueError("BFF_ENCRYPTION_KEY must decode to exactly 32 bytes")
    if len(set(decoded)) < MIN_DISTINCT_KEY_BYTES:
        raise ValueError(
            "BFF_ENCRYPTION_KEY is not random enough (too few distinct bytes): make a new one"
        )
    return decoded


def load_settings(**overrides: object) -> Settings:
    """Build Settings from the environment, turning validation failures into one clear report."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems: list[str] = []
        for error in exc.errors(include_url=False, include_input=False):
            names = [str(part) for part in error["loc"]]
            field = names[0] if names else ""
            message = str(error["msg"]).removeprefix("Value error, ")
            if field:
                problems.append(f"{_env_name(field)}: {message}")
            else:
                problems.extend(message.splitlines())
        raise ConfigurationError(problems) from None


def _env_name(field: str) -> str:
    # A field's name is its variable's name (matched case-insensitively): no aliases.
    return field.upper()
