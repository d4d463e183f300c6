"""Where Flinks' documents disagree, or a sandbox behaviour is not documented: one switch each.

Every switch is a ``SandboxSettings`` field (``SANDBOX_<NAME>``, a CLI flag) and can be changed at
run time through ``/__sandbox/switches``, like the faults. The README's behaviour table says which
document each value follows; the defaults keep what the BFF is built against today.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    from app.sandbox.config import SandboxSettings

WrongAnswer = Literal["fail", "new_challenge"]
TokenReuse = Literal["allow", "refuse"]
ApiKeyCheck = Literal["required", "optional"]
RedirectMessage = Literal["both", "url_only", "top_level"]
JsRedirect = Literal["honour", "ignore"]
OAuthToken = Literal["optional", "required"]
UnknownCustomerCode = Literal["ACCESS_DENIED", "CUSTOMER_NOT_FOUND"]
ConnectErrorUsers = Literal["redirect", "event"]
WebhookHeader = Literal["flinks-authenticity-key", "X-Flinks-Signature"]
# Flinks makes at most 10 delivery attempts per webhook (contract 6.5).
WEBHOOK_MAX_ATTEMPTS = 10


class Switches(BaseModel):
    # A wrong MFA answer: 401 INVALID_SECURITY_RESPONSE ending the session ("fail", the error
    # table), or the same 401 carrying new SecurityChallenges for the same RequestId.
    wrong_answer: WrongAnswer = "fail"
    # The authorize token that got a 203, sent again with the answers: accepted ("allow", the
    # legacy docs and contract section 9.2) or 401 as any used token ("refuse", single use).
    mfa_token_reuse: TokenReuse = "allow"  # noqa: S105 - a switch value
    # x-api-key on the data endpoints: a missing key refused ("required") or let through
    # ("optional": not enabled on the instance; a wrong key is still refused).
    api_key_check: ApiKeyCheck = "required"
    # Connect's REDIRECT message: loginId only inside url (documented), only top-level, or both.
    redirect_message: RedirectMessage = "both"
    # Connect's jsRedirect=true (not in Flinks' parameter list): no navigation, or ignored.
    js_redirect: JsRedirect = "honour"
    # /v3/oauth/authorize: a flinks-auth-key token accepted but not needed, or required.
    oauth_token: OAuthToken = "optional"  # noqa: S105 - a switch value
    # The FlinksCode of a request to a customer id the instance does not know (undocumented).
    unknown_customer_code: UnknownCustomerCode = "ACCESS_DENIED"
    # The HTTP status of INVALID_LOGIN and INVALID_REQUEST: 401 (error table) or 400 (help centre).
    invalid_login_status: int = 401
    # A cached /Authorize this soon after a Connect sign-in answers 202 OPERATION_PENDING.
    connect_cached_pending_seconds: float = Field(default=0.0, ge=0)
    # How long a slow bank's live /Authorize runs before 202 OPERATION_DISPATCHED (Flinks: 210 s).
    slow_bank_seconds: float = Field(default=3.0, ge=0)
    # How long dispatched work then runs in the background before its RequestId is answered.
    dispatched_seconds: float = Field(default=5.0, ge=0)
    # What the Connect page does for test_disabled_account / test_service_unavailable:
    # "redirect" issues a LoginId (the error shows on the next live /Authorize);
    # "event" reports the FlinksCode in the iframe, as Flinks Connect itself does.
    connect_error_users: ConnectErrorUsers = "redirect"
    mfa_rounds: int = Field(default=1, ge=1, le=3)
    detail_pending_polls: int = Field(default=1, ge=0)

    @field_validator("invalid_login_status")
    @classmethod
    def _status(cls, value: int) -> int:
        if value not in (400, 401):
            raise ValueError("invalid_login_status must be 400 or 401")
        return value


class SwitchConfig(Switches):
    """What ``GET/PUT/PATCH /__sandbox/switches`` read and write."""

    model_config = ConfigDict(extra="forbid")

    @classmethod
    def from_settings(cls, settings: SandboxSettings) -> SwitchConfig:
        return cls.model_validate(settings.model_dump(include=set(Switches.model_fields)))


class WebhookSwitches(BaseModel):
    """How the webhook emitter (``app/sandbox/webhooks.py``) delivers. Kept apart from
    ``Switches`` so ``/__sandbox/switches`` stays as it is; changed at run time through
    ``/__sandbox/webhooks/switches``."""

    # The signature's header: the legacy reference page's name or the newer guide's (contract 9.9).
    webhook_header: WebhookHeader = "flinks-authenticity-key"
    # The first N attempts of each delivery count as failed whatever the receiver answers, so
    # the same body is sent again (a receiver sees N + 1 copies); N >= 10 means it never lands.
    webhook_fail_first: int = Field(default=0, ge=0, le=WEBHOOK_MAX_ATTEMPTS)
    # The pause between attempts: Flinks waits 30 minutes, the sandbox this many seconds.
    webhook_retry_seconds: float = Field(default=0.5, ge=0, le=3600)
    # Each event is delivered this many times (separate deliveries of the same body).
    webhook_duplicates: int = Field(default=1, ge=1, le=10)
    # Sign with a wrong key, so the receiver should refuse the delivery.
    webhook_bad_signature: bool = False


class WebhookSwitchConfig(WebhookSwitches):
    """What ``GET/PUT/PATCH /__sandbox/webhooks/switches`` read and write."""

    model_config = ConfigDict(extra="forbid")

    @classmethod
    def from_settings(cls, settings: SandboxSettings) -> WebhookSwitchConfig:
        return cls.model_validate(settings.model_dump(include=set(WebhookSwitches.model_fields)))
