"""Sandbox settings: environment variables prefixed ``SANDBOX_`` or CLI flags."""

from __future__ import annotations

import json
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.sandbox.faults import FaultRates
from app.sandbox.switches import Switches, WebhookSwitches

TOOLBOX_CUSTOMER_ID = "43387ca6-0391-4c82-857d-70d95f087ecb"
TOOLBOX_SECRET_KEY = "c4569c54-e167-4d34-8de6-f4113bc82414"  # noqa: S105 - public Toolbox value
TOOLBOX_API_KEY = "3d5266a8-b697-48d4-8de6-52e2e2662acc"
DEFAULT_REDIRECT_URIS = (
    "http://127.0.0.1:8000/v1/oauth/callback",
    "http://localhost:8000/v1/oauth/callback",
)

StrList = Annotated[list[str], NoDecode]


def _split_list(value: object) -> object:
    """Accept a JSON array or a comma-separated string for list settings."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        return json.loads(text)
    return [item.strip() for item in text.split(",") if item.strip()]


class SandboxSettings(BaseSettings, FaultRates, Switches, WebhookSwitches):
    """Everything the sandbox can be told; defaults are the public Toolbox values."""

    model_config = SettingsConfigDict(env_prefix="SANDBOX_", extra="ignore")

    customer_ids: StrList = Field(default_factory=lambda: [TOOLBOX_CUSTOMER_ID], min_length=1)
    secret_key: str = Field(default=TOOLBOX_SECRET_KEY, min_length=1)
    # Empty: data endpoints skip the x-api-key check (instances where Flinks has not enabled it).
    api_key: str = TOOLBOX_API_KEY
    redirect_uris: StrList = Field(default_factory=lambda: list(DEFAULT_REDIRECT_URIS))
    # False emulates an integration created before October 2024 (authorize token optional).
    require_authorize_token: bool = True

    token_ttl_seconds: float = Field(default=1800.0, gt=0)
    mfa_session_ttl_seconds: float = Field(default=480.0, gt=0)
    request_ttl_seconds: float = Field(default=1800.0, gt=0)

    stable_login_ids: bool = True

    public_url: str | None = None
    call_record_limit: int = Field(default=10_000, ge=1)
    control_api: bool = True

    # Where to POST Flinks' webhooks after an extraction (None: none are sent), and the HMAC
    # key that signs them (empty: unsigned, as on an instance without HMAC). The delivery
    # switches (webhook_header, ...): the fields of WebhookSwitches.
    webhook_url: str | None = None
    webhook_secret: str = ""

    # Latency and fault rates (latency_ms, error_rate, ...): the fields of FaultRates.
    # The switches (wrong_answer, mfa_rounds, ...), changeable at run time: the fields of Switches.
    fault_seed: int | None = None

    @field_validator("customer_ids", "redirect_uris", mode="before")
    @classmethod
    def _lists(cls, value: object) -> object:
        return _split_list(value)

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("webhook_url must be an http:// or https:// URL")
        return value

    @field_validator("public_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else None
