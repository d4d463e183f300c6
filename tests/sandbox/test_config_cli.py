"""SandboxSettings from the environment, and the command line."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from app.sandbox import cli
from app.sandbox.config import (
    DEFAULT_REDIRECT_URIS,
    TOOLBOX_API_KEY,
    TOOLBOX_CUSTOMER_ID,
    TOOLBOX_SECRET_KEY,
    SandboxSettings,
)


def test_defaults_are_the_public_toolbox_values() -> None:
    settings = SandboxSettings()

    assert (
        settings.customer_ids == ["43387ca6-0391-4c82-857d-70d95f087ecb"] == [TOOLBOX_CUSTOMER_ID]
    )
    assert settings.secret_key == "c4569c54-e167-4d34-8de6-f4113bc82414" == TOOLBOX_SECRET_KEY
    assert settings.api_key == "3d5266a8-b697-48d4-8de6-52e2e2662acc" == TOOLBOX_API_KEY
    assert (
        settings.redirect_uris
        == [
            "http://127.0.0.1:8000/v1/oauth/callback",
            "http://localhost:8000/v1/oauth/callback",
        ]
        == list(DEFAULT_REDIRECT_URIS)
    )
    assert settings.token_ttl_seconds == 1800
    assert settings.require_authorize_token is True


def test_environment_variables_use_the_sandbox_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_CUSTOMER_IDS", "a-1, b-2")
    monkeypatch.setenv("SANDBOX_REDIRECT_URIS", '["https://x.example/cb"]')
    monkeypatch.setenv("SANDBOX_TOKEN_TTL_SECONDS", "900")
    monkeypatch.setenv("SANDBOX_LATENCY_MS", "12.5")
    monkeypatch.setenv("SANDBOX_API_KEY", "")
    monkeypatch.setenv("SANDBOX_CONNECT_ERROR_USERS", "event")

    settings = SandboxSettings()

    assert settings.customer_ids == ["a-1", "b-2"]
    assert settings.redirect_uris == ["https://x.example/cb"]
    assert settings.token_ttl_seconds == 900
    assert settings.latency_ms == 12.5
    assert settings.api_key == ""
    assert settings.connect_error_users == "event"


@pytest.mark.parametrize(
    "values",
    [
        {"error_rate": 0.7, "drop_rate": 0.7},
        {"token_ttl_seconds": 0},
        {"customer_ids": []},
        {"mfa_rounds": 4},
        {"connect_error_users": "explode"},
    ],
)
def test_invalid_settings_are_refused(values: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        SandboxSettings(**values)  # type: ignore[arg-type]


def test_flags_override_settings() -> None:
    args = cli.build_parser().parse_args(
        [
            "--port", "9001",
            "--customer-id", "c-1", "--customer-id", "c-2",
            "--redirect-uri", "https://app.example/cb",
            "--no-api-key", "--no-token-required", "--random-login-ids",
            "--token-ttl", "60", "--latency-ms", "5", "--jitter-ms", "2",
            "--error-rate", "0.1", "--error-status", "503", "--drop-rate", "0.05",
            "--timeout-rate", "0.05", "--timeout-seconds", "9", "--fault-seed", "3",
            "--detail-pending-polls", "2", "--mfa-rounds", "3", "--connect-error-users", "event",
        ]
    )  # fmt: skip

    settings = cli.settings_from_args(args)

    assert args.port == 9001
    assert args.host == "127.0.0.1"
    assert settings.customer_ids == ["c-1", "c-2"]
    assert settings.redirect_uris == ["https://app.example/cb"]
    assert settings.api_key == ""
    assert settings.require_authorize_token is False
    assert settings.stable_login_ids is False
    assert (settings.token_ttl_seconds, settings.latency_ms, settings.jitter_ms) == (60, 5, 2)
    assert (settings.error_rate, settings.error_status, settings.drop_rate) == (0.1, 503, 0.05)
    assert (settings.timeout_rate, settings.timeout_seconds, settings.fault_seed) == (0.05, 9, 3)
    assert (settings.detail_pending_polls, settings.mfa_rounds) == (2, 3)
    assert settings.connect_error_users == "event"


def test_the_default_port_is_8001() -> None:
    args = cli.build_parser().parse_args([])

    assert (args.host, args.port) == ("127.0.0.1", 8001)
    assert cli.settings_from_args(args) == SandboxSettings()


def test_invalid_flags_exit_2_without_starting(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--error-rate", "2"]) == 2
    assert "invalid settings" in capsys.readouterr().err


def test_python_dash_m_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.sandbox", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert result.returncode == 0
    assert "--redirect-uri" in result.stdout
