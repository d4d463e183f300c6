from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys

import pytest

from app.settings import ConfigurationError, Settings, load_settings

PRODUCTION_OK = {
    "BFF_ENV": "production",
    "REDIS_URL": "rediss://redis.internal:6380/0",
    "FLINKS_CUSTOMER_ID": "43387ca6-0391-4c82-857d-70d95f087ecb",
    "FLINKS_SECRET_KEY": "prod-secret-value",
    "BFF_PUBLIC_URL": "https://bff.example.com",
    "BFF_ENCRYPTION_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
    "BFF_RETURN_URLS": "https://app.example.com/linked",
    "BFF_CORS_ORIGINS": "https://app.example.com",
    "BFF_AUTH": "session",
}


def _env(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def test_development_starts_with_nothing_set() -> None:
    settings = load_settings(_env_file=None)
    assert settings.bff_env == "development"
    assert settings.redis_url is None
    assert settings.oauth_redirect_uri == "http://127.0.0.1:8000/v1/oauth/callback"
    assert settings.flinks_base_url == "https://toolbox-api.private.fin.ag"
    assert settings.connect_page_url == "https://toolbox-iframe.private.fin.ag/v2/"
    assert settings.connect_origin == "https://toolbox-iframe.private.fin.ag"


def test_complete_production_configuration_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    _env(monkeypatch, PRODUCTION_OK)
    settings = load_settings(_env_file=None)
    assert settings.is_production
    assert settings.bff_return_urls == ("https://app.example.com/linked",)
    assert "prod-secret-value" not in repr(settings)


@pytest.mark.parametrize(
    ("drop", "override", "named"),
    [
        ("REDIS_URL", None, "REDIS_URL"),
        ("FLINKS_CUSTOMER_ID", None, "FLINKS_CUSTOMER_ID"),
        ("FLINKS_SECRET_KEY", None, "FLINKS_SECRET_KEY"),
        ("BFF_ENCRYPTION_KEY", None, "BFF_ENCRYPTION_KEY"),
        (None, ("BFF_PUBLIC_URL", "http://bff.example.com"), "BFF_PUBLIC_URL"),
        ("BFF_PUBLIC_URL", None, "BFF_PUBLIC_URL"),
        (None, ("BFF_RETURN_URLS", "http://app.example.com/x"), "BFF_RETURN_URLS"),
        (None, ("BFF_CORS_ORIGINS", "http://app.example.com"), "BFF_CORS_ORIGINS"),
        ("BFF_AUTH", None, "BFF_AUTH"),
    ],
)
def test_production_refuses_each_missing_or_unsafe_variable(
    monkeypatch: pytest.MonkeyPatch,
    drop: str | None,
    override: tuple[str, str] | None,
    named: str,
) -> None:
    values = dict(PRODUCTION_OK)
    if drop:
        values.pop(drop)
    if override:
        values[override[0]] = override[1]
    _env(monkeypatch, values)
    with pytest.raises(ConfigurationError) as refused:
        load_settings(_env_file=None)
    assert len(refused.value.problems) == 1
    assert named in refused.value.problems[0]


def test_production_with_nothing_set_names_every_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BFF_ENV", "production")
    with pytest.raises(ConfigurationError) as refused:
        load_settings(_env_file=None)
    report = refused.value.report()
    for name in (
        "REDIS_URL",
        "FLINKS_CUSTOMER_ID",
        "FLINKS_SECRET_KEY",
        "BFF_PUBLIC_URL",
        "BFF_ENCRYPTION_KEY",
        "BFF_RETURN_URLS",
        "BFF_CORS_ORIGINS",
        "BFF_AUTH",
    ):
        assert name in report


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BFF_STATE_TTL", "0"),
        ("BFF_FLOW_TTL", "-5"),
        ("BFF_LOGIN_TTL", "soon"),
        ("BFF_PUBLIC_URL", "not a url"),
        ("REDIS_URL", "http://redis:6379"),
        ("BFF_RETURN_URLS", "/relative/path"),
        ("BFF_RETURN_URLS", "javascript:alert(1)"),
        ("BFF_CORS_ORIGINS", "*"),
        ("BFF_CORS_ORIGINS", "https://app.example.com/path"),
        ("BFF_ENCRYPTION_KEY", "too-short"),
        ("BFF_ENV", "staging"),
        ("FLINKS_INSTANCE", "evil.example.com/x"),
    ],
)
def test_bad_values_are_refused_with_the_variable_named(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as refused:
        load_settings(_env_file=None)
    assert any(problem.startswith(name) for problem in refused.value.problems)
    # The refused value itself is not echoed (it may be a secret).
    if name == "BFF_ENCRYPTION_KEY":
        assert value not in refused.value.report()


def test_lists_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BFF_RETURN_URLS", " https://a.example/x , https://b.example/y ")
    monkeypatch.setenv("BFF_CORS_ORIGINS", "https://a.example,https://b.example/")
    settings = load_settings(_env_file=None)
    assert settings.bff_return_urls == ("https://a.example/x", "https://b.example/y")
    assert settings.bff_cors_origins == ("https://a.example", "https://b.example")


def test_explicit_flinks_urls_override_the_instance(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLINKS_INSTANCE", "acme")
    assert load_settings(_env_file=None).flinks_base_url == "https://acme-api.private.fin.ag"
    monkeypatch.setenv("FLINKS_API_URL", "http://127.0.0.1:8001/")
    monkeypatch.setenv("FLINKS_CONNECT_URL", "http://127.0.0.1:8001/v2/")
    settings = load_settings(_env_file=None)
    assert settings.flinks_base_url == "http://127.0.0.1:8001"
    assert settings.connect_origin == "http://127.0.0.1:8001"


def test_dotenv_file_is_read(tmp_path: os.PathLike[str]) -> None:
    env_file = os.path.join(tmp_path, ".env")
    with open(env_file, "w") as handle:
        handle.write("BFF_STATE_TTL=42\nFLINKS_DEMO=true\n")
    settings = Settings(_env_file=env_file)
    assert settings.bff_state_ttl == 42
    assert settings.flinks_demo is True


def _serve(cwd: os.PathLike[str], settings: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`flinks-bff serve` with only `settings` of this machine's BFF/Flinks/Redis environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BFF_", "FLINKS_", "REDIS"))}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "serve"],
        env={**env, **settings},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_serve_refuses_to_start_in_production_and_names_what_is_missing(
    tmp_path: os.PathLike[str],
) -> None:
    result = _serve(tmp_path, {"BFF_ENV": "production"})
    assert result.returncode == 2
    for name in ("REDIS_URL", "FLINKS_SECRET_KEY", "BFF_PUBLIC_URL", "BFF_ENCRYPTION_KEY"):
        assert name in result.stderr
    assert "Traceback" not in result.stderr


def test_the_example_env_file_loads_as_is() -> None:
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / ".env.example"
    settings = Settings(_env_file=example)
    assert settings.bff_env == "development"
    assert settings.redis_url is None  # `REDIS_URL=` means unset
    assert settings.flinks_institutions  # the default list


_ZERO_KEY = base64.urlsafe_b64encode(bytes(32)).decode()
_TYPED_KEY = base64.urlsafe_b64encode(b"0123456789" * 3 + b"ab").decode()


@pytest.mark.parametrize(
    ("override", "named"),
    [
        (("FLINKS_API_URL", "http://flinks.example.com"), "FLINKS_API_URL"),
        (("FLINKS_CONNECT_URL", "http://iframe.example.com/v2/"), "FLINKS_CONNECT_URL"),
        (("FLINKS_DEMO", "true"), "FLINKS_DEMO"),
        (("REDIS_URL", "redis://redis.internal:6379/0"), "REDIS_URL"),
        (("REDIS_URL", "redis://10.0.0.5:6379/0"), "REDIS_URL"),
        (("BFF_ENCRYPTION_KEY", _ZERO_KEY), "BFF_ENCRYPTION_KEY"),
        (("BFF_ENCRYPTION_KEY", _TYPED_KEY), "BFF_ENCRYPTION_KEY"),
        (("BFF_PUBLIC_URL", "https://bff.example.com/?x=1"), "BFF_PUBLIC_URL"),
        (("BFF_PUBLIC_URL", "https://bff.example.com/#top"), "BFF_PUBLIC_URL"),
        (("BFF_PUBLIC_URL", "https://user:pw@bff.example.com"), "BFF_PUBLIC_URL"),
        (("FLINKS_API_URL", "https://user:pw@flinks.example.com"), "FLINKS_API_URL"),
        (("FLINKS_API_URL", "https://flinks.example.com/?a=b"), "FLINKS_API_URL"),
        (("FLINKS_CONNECT_URL", "https://iframe.example.com/v2/#x"), "FLINKS_CONNECT_URL"),
        (("BFF_RETURN_URLS", "https://app.example.com/linked?next=/x"), "BFF_RETURN_URLS"),
    ],
)
def test_production_refuses_unsafe_settings_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, override: tuple[str, str], named: str
) -> None:
    _env(monkeypatch, {**PRODUCTION_OK, override[0]: override[1]})
    with pytest.raises(ConfigurationError) as refused:
        load_settings(_env_file=None)
    assert [p for p in refused.value.problems if named in p], refused.value.problems
    assert len(refused.value.problems) == 1, refused.value.problems
    if named == "BFF_ENCRYPTION_KEY":
        assert override[1] not in refused.value.report()


@pytest.mark.parametrize(
    "redis_url",
    [
        "rediss://redis.internal:6380/0",
        "redis://127.0.0.1:6379/0",
        "redis://localhost:6379/0",
        "redis://[::1]:6379/0",
        "unix:///run/redis.sock",
    ],
)
def test_production_accepts_tls_or_local_redis(
    monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    _env(monkeypatch, {**PRODUCTION_OK, "REDIS_URL": redis_url})
    assert load_settings(_env_file=None).redis_url is not None


def test_plaintext_redis_on_the_network_needs_an_explicit_yes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _env(
        monkeypatch,
        {
            **PRODUCTION_OK,
            "REDIS_URL": "redis://redis.internal:6379/0",
            "BFF_ALLOW_PLAINTEXT_REDIS": "true",
        },
    )
    assert str(load_settings(_env_file=None).redis_url) == "redis://redis.internal:6379/0"


def test_every_unsafe_setting_is_named_in_one_report(monkeypatch: pytest.MonkeyPatch) -> None:
    _env(
        monkeypatch,
        {
            **PRODUCTION_OK,
            "FLINKS_API_URL": "http://user:pw@flinks.example.com",
            "FLINKS_DEMO": "true",
            "REDIS_URL": "redis://redis.internal:6379/0",
            "BFF_PUBLIC_URL": "https://bff.example.com/?x=1",
        },
    )
    with pytest.raises(ConfigurationError) as refused:
        load_settings(_env_file=None)
    report = refused.value.report()
    for name in ("FLINKS_API_URL", "FLINKS_DEMO", "REDIS_URL", "BFF_PUBLIC_URL"):
        assert name in report
    assert "pw" not in report


def test_userinfo_in_the_flinks_url_is_refused_in_development_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLINKS_API_URL", "http://user:pw@127.0.0.1:8001")
    with pytest.raises(ConfigurationError) as refused:
        load_settings(_env_file=None)
    assert refused.value.problems == ["FLINKS_API_URL must have no user-info, query or fragment"]


def test_serve_names_a_flinks_url_with_userinfo_without_a_traceback(
    tmp_path: os.PathLike[str],
) -> None:
    result = _serve(
        tmp_path, {**PRODUCTION_OK, "FLINKS_API_URL": "https://user:pw@flinks.example.com"}
    )
    assert result.returncode == 2
    assert "FLINKS_API_URL" in result.stderr
    assert "Traceback" not in result.stderr
    assert "pw@" not in result.stderr


def test_every_field_is_read_from_the_variable_of_its_own_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No aliases: a field's name is its variable's name, so the two cannot drift apart."""
    for name, field in Settings.model_fields.items():
        assert field.validation_alias is None, name
        assert field.alias is None, name
    monkeypatch.setenv("BFF_SESSION_TTL", "77")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/3")
    monkeypatch.setenv("FLINKS_BREAKER_RESET", "7")
    settings = load_settings(_env_file=None)
    assert (settings.bff_session_ttl, settings.flinks_breaker_reset) == (77, 7)
    assert str(settings.redis_url) == "redis://127.0.0.1:6379/3"


JWT_OK = {
    "BFF_AUTH": "jwt",
    "BFF_JWT_JWKS_URL": "https://id.example.com/.well-known/jwks.json",
    "BFF_JWT_ISSUER": "https://id.example.com/",
    "BFF_JWT_AUDIENCE": "flinks-bff",
}


def test_jwt_mode_is_accepted_with_its_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    _env(monkeypatch, {**PRODUCTION_OK, **JWT_OK, "BFF_JWT_ALGORITHMS": "ES256"})
    settings = load_settings(_env_file=None)
    assert settings.auth_mode == "jwt"
    assert settings.bff_jwt_algorithms == ("ES256",)


@pytest.mark.parametrize(
    ("drop", "override", "named"),
    [
        ("BFF_JWT_ISSUER", None, "BFF_JWT_ISSUER"),
        ("BFF_JWT_AUDIENCE", None, "BFF_JWT_AUDIENCE"),
        ("BFF_JWT_JWKS_URL", None, "BFF_JWT_JWKS_URL"),
        (None, ("BFF_JWT_PUBLIC_KEY", "not a pem"), "BFF_JWT_JWKS_URL"),
        (None, ("BFF_JWT_ALGORITHMS", "HS256"), "BFF_JWT_ALGORITHMS"),
        (None, ("BFF_JWT_ALGORITHMS", "none"), "BFF_JWT_ALGORITHMS"),
        (None, ("BFF_JWT_JWKS_URL", "http://id.example.com/jwks"), "BFF_JWT_JWKS_URL"),
    ],
)
def test_jwt_mode_refuses_what_it_cannot_verify_with(
    monkeypatch: pytest.MonkeyPatch,
    drop: str | None,
    override: tuple[str, str] | None,
    named: str,
) -> None:
    values = {**PRODUCTION_OK, **JWT_OK}
    if drop:
        values.pop(drop)
    if override:
        values[override[0]] = override[1]
    _env(monkeypatch, values)
    with pytest.raises(ConfigurationError) as refused:
        load_settings(_env_file=None)
    assert any(named in problem for problem in refused.value.problems), refused.value.problems


def test_header_mode_needs_the_proxies_it_believes(monkeypatch: pytest.MonkeyPatch) -> None:
    _env(monkeypatch, {**PRODUCTION_OK, "BFF_AUTH": "header"})
    with pytest.raises(ConfigurationError) as refused:
        load_settings(_env_file=None)
    assert any("BFF_TRUSTED_PROXIES" in problem for problem in refused.value.problems)
    monkeypatch.setenv("BFF_TRUSTED_PROXIES", "10.0.0.0/8")
    assert load_settings(_env_file=None).auth_mode == "header"


def test_service_tokens_are_digests_never_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    digest = "a" * 64
    monkeypatch.setenv("BFF_SERVICE_TOKENS", f"{digest}, {'B' * 64}")
    assert load_settings(_env_file=None).bff_service_tokens == (digest, "b" * 64)
    monkeypatch.setenv("BFF_SERVICE_TOKENS", "my-plain-service-token")
    with pytest.raises(ConfigurationError) as refused:
        load_settings(_env_file=None)
    assert "BFF_SERVICE_TOKENS" in refused.value.problems[0]
    assert "my-plain-service-token" not in refused.value.report()


def test_a_custom_scheme_return_url_needs_its_scheme_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app_return = "com.example.app:/flinks/return"
    monkeypatch.setenv("BFF_RETURN_URLS", f"http://127.0.0.1:8000/,{app_return}")
    with pytest.raises(ConfigurationError) as refused:
        load_settings(_env_file=None)
    assert "BFF_RETURN_URL_SCHEMES" in refused.value.report()
    monkeypatch.setenv("BFF_RETURN_URL_SCHEMES", "com.example.app")
    assert app_return in load_settings(_env_file=None).bff_return_urls
    # A browser's own schemes are never an app's.
    for scheme in ("javascript", "data", "https"):
        monkeypatch.setenv("BFF_RETURN_URL_SCHEMES", scheme)
        with pytest.raises(ConfigurationError):
            load_settings(_env_file=None)


def test_production_takes_https_return_urls_or_a_named_app_scheme(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _env(monkeypatch, PRODUCTION_OK)
    monkeypatch.setenv("BFF_RETURN_URLS", "https://app.example.com/linked,com.example.app:/back")
    with pytest.raises(ConfigurationError):
        load_settings(_env_file=None)
    monkeypatch.setenv("BFF_RETURN_URL_SCHEMES", "com.example.app")
    assert load_settings(_env_file=None).is_production
    monkeypatch.setenv("BFF_RETURN_URLS", "http://app.example.com/linked,com.example.app:/back")
    with pytest.raises(ConfigurationError) as refused:
        load_settings(_env_file=None)
    assert "must be https" in refused.value.report()


WEBHOOK_SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()


def test_production_accepts_events_out_to_a_public_https_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _env(
        monkeypatch,
        {
            **PRODUCTION_OK,
            "BFF_WEBHOOK_URL": "https://hooks.example.com/bff",
            "BFF_WEBHOOK_SECRET": WEBHOOK_SECRET,
        },
    )
    settings = load_settings(_env_file=None)
    assert str(settings.bff_webhook_url) == "https://hooks.example.com/bff"
    assert WEBHOOK_SECRET not in repr(settings)


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"BFF_WEBHOOK_URL": "https://hooks.example.com/bff"}, "needs BFF_WEBHOOK_SECRET"),
        (
            {"BFF_WEBHOOK_URL": "https://hooks.example.com/bff", "BFF_WEBHOOK_SECRET": "hunter2"},
            "BFF_WEBHOOK_SECRET must be whsec_",
        ),
        (
            {
                "BFF_WEBHOOK_URL": "https://hooks.example.com/bff",
                "BFF_WEBHOOK_SECRET": "whsec_" + base64.b64encode(b"short").decode(),
            },
            "BFF_WEBHOOK_SECRET must be whsec_",
        ),
        (
            {
                "BFF_WEBHOOK_URL": "http://hooks.example.com/bff",
                "BFF_WEBHOOK_SECRET": WEBHOOK_SECRET,
            },
            "BFF_WEBHOOK_URL must be https",
        ),
        (
            {"BFF_WEBHOOK_URL": "https://10.0.0.8/bff", "BFF_WEBHOOK_SECRET": WEBHOOK_SECRET},
            "BFF_WEBHOOK_ALLOW_PRIVATE",
        ),
        (
            {"BFF_WEBHOOK_URL": "https://localhost/bff", "BFF_WEBHOOK_SECRET": WEBHOOK_SECRET},
            "BFF_WEBHOOK_ALLOW_PRIVATE",
        ),
    ],
)
def test_production_refuses_events_out_it_cannot_send_safely(
    monkeypatch: pytest.MonkeyPatch, values: dict[str, str], named: str
) -> None:
    _env(monkeypatch, {**PRODUCTION_OK, **values})
    with pytest.raises(ConfigurationError) as refused:
        load_settings(_env_file=None)
    assert len(refused.value.problems) == 1
    assert named in refused.value.problems[0]
    assert WEBHOOK_SECRET not in str(refused.value.problems)


def test_a_private_destination_is_production_s_only_with_an_explicit_yes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _env(
        monkeypatch,
        {
            **PRODUCTION_OK,
            "BFF_WEBHOOK_URL": "https://10.0.0.8/bff",
            "BFF_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "BFF_WEBHOOK_ALLOW_PRIVATE": "true",
        },
    )
    assert load_settings(_env_file=None).bff_webhook_allow_private


def test_development_delivers_over_http_to_this_machine_but_still_needs_a_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BFF_WEBHOOK_URL", "http://127.0.0.1:8002/webhooks")
    with pytest.raises(ConfigurationError):
        load_settings(_env_file=None)
    monkeypatch.setenv("BFF_WEBHOOK_SECRET", WEBHOOK_SECRET)
    assert load_settings(_env_file=None).bff_webhook_url is not None


@pytest.mark.parametrize(
    "url", ["https://user:pass@hooks.example.com/bff", "https://hooks.example.com/bff#frag"]
)
def test_a_webhook_url_with_credentials_or_a_fragment_is_refused_everywhere(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    _env(monkeypatch, {"BFF_WEBHOOK_URL": url, "BFF_WEBHOOK_SECRET": WEBHOOK_SECRET})
    with pytest.raises(ConfigurationError) as refused:
        load_settings(_env_file=None)
    assert refused.value.problems == ["BFF_WEBHOOK_URL must have no user-info or fragment"]
    assert "pass" not in str(refused.value.problems)
