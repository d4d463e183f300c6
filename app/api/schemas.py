"""Request and response bodies of the v1 API. Nothing here carries a loginId or RequestId out."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from annotated_types import Ge, Le, MaxLen, MinLen
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    field_validator,
)

from app.flows import (
    FlowError,
    FlowKind,
    FlowRecord,
    FlowStatus,
    InstitutionId,
    Language,
)

Tag = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
FlowId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{22}$")]
Url = Annotated[str, StringConstraints(min_length=1, max_length=2048)]


class StrictBody(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AuthorizeTokenOut(BaseModel):
    authorize_token: str
    expires_at: datetime


HexColour = Annotated[str, StringConstraints(pattern=r"^[0-9A-Fa-f]{6}$")]
DisplayName = Annotated[
    str,
    StringConstraints(
        pattern=r"^[A-Za-z0-9.,'&()-](?:[A-Za-z0-9.,'&() -]{0,58}[A-Za-z0-9.,'&()-])?$"
    ),
]
Feature = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9]{0,39}$")]
Flag = StrictBool | None


RetryCount = Annotated[StrictInt, Ge(1), Le(10)]


class ConnectOptions(StrictBody):
    """The Flinks Connect parameters a caller may set (flinks-contract.md 5.2), under Flinks'
    own names. The BFF sets authorizeToken, demo, language, redirectUrl, tag and jsRedirect."""

    consentEnable: Literal[True] | None = None
    customerName: DisplayName | None = None
    theme: Literal["dark", "light"] | None = None
    desktopLayout: Flag = None
    institutionFilterEnable: Flag = None
    headerEnable: Flag = None
    headerImgEnable: Flag = None
    backEnable: Flag = None
    staticLoadingEnable: Flag = None
    removePadding: Flag = None
    fixedHeightEnable: Flag = None
    boxLayout: Flag = None
    loadingType: Literal["dots", "progressbar"] | None = None
    backgroundColor: HexColour | None = None
    foregroundColor1: HexColour | None = None
    foregroundColor2: HexColour | None = None
    productType: Literal["banking", "investment"] | None = None
    accountSelectorEnable: Flag = None
    accountSelectorMultiple: Flag = None
    accountSelectorNoTitle: Flag = None
    accountSelectorCurrency: Literal["cad", "usd"] | None = None
    daysOfTransactions: Literal["Days90", "Days365"] | None = None
    scheduleRefresh: Flag = None
    maximumRetry: RetryCount | None = None
    closeEnable: Flag = None
    enhancedMFA: Flag = None
    skipEnhancedMFA: Flag = None
    features: Annotated[list[Feature], MinLen(1), MaxLen(10)] | None = None

    @field_validator("maximumRetry", mode="before")
    @classmethod
    def _whole_number(cls, value: object) -> object:
        # JSON Schema counts 3.0 as an integer; a strict int would not.
        return int(value) if isinstance(value, float) and value.is_integer() else value


NATIVE_CONNECT = (
    "A native app's flow (RFC 7636): BASE64URL(SHA256(code_verifier)); `return_url` is then "
    "required. The answer's `hosted_url` is the BFF's Connect page, which the app opens in the "
    "system browser; it ends on `return_url?flow_id=…&handoff_code=…`, and the app redeems the "
    "code with `POST /v1/flows/{flow_id}/handoff`. Anything but a well-formed S256 challenge is "
    "400 `handoff_invalid`."
)


class ConnectSessionIn(StrictBody):
    language: Language = "en"
    return_url: Url | None = Field(None, description="Exactly one of BFF_RETURN_URLS.")
    tag: Tag | None = None
    options: ConnectOptions = Field(default_factory=ConnectOptions)
    code_challenge: Annotated[str, MaxLen(256)] | None = Field(None, description=NATIVE_CONNECT)
    code_challenge_method: Annotated[str, MaxLen(16)] | None = Field(
        None, description="`S256` (`plain` is refused)."
    )


class ConnectSessionOut(BaseModel):
    flow_id: str
    iframe_url: str | None = Field(
        description="Connect's iframe URL (a fresh authorize token in it); null for a native "
        "app's flow, whose hosted page mints its own."
    )
    connect_origin: str
    expires_at: datetime
    hosted_url: str | None = Field(
        None,
        description="A native app's flow only: the hosted Connect page to open in the system "
        "browser. Its `#ticket=` fragment opens it once; never log or share this URL.",
    )


class HostedOpenIn(StrictBody):
    """No ticket: the page reopens with its own cookie (a reload)."""

    ticket: Annotated[str, MaxLen(256)] | None = None


class HostedOpenOut(BaseModel):
    iframe_url: str = Field(description="Connect's iframe URL, with a freshly minted token.")
    connect_origin: str


class HostedCompleteOut(BaseModel):
    location: str = Field(
        description="Where the page goes: the flow's return URL with `flow_id` and `handoff_code`."
    )


LoginId = Annotated[
    str,
    StringConstraints(
        pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    ),
]


class CompleteIn(StrictBody):
    login_id: LoginId = Field(description="The loginId of Connect's REDIRECT event.")
    institution: InstitutionId | None = None


Prompt = Annotated[str, StringConstraints(min_length=1, max_length=500)]
# An ImageSelection answer is the base64 PNG Flinks offered.
Answer = Annotated[str, StringConstraints(min_length=1, max_length=16384)]

MFA_ANSWERS = (
    "The answer to each challenge of `mfa.challenges`, keyed by its exact `prompt`, for every "
    "type:\n\n"
    '- `QuestionAndAnswer` without choices: exactly one non-empty answer, `["Montreal"]`;\n'
    "- `QuestionAndAnswer` with choices, `MultipleChoice`, `ImageSelection`: exactly one of the "
    "offered `choices`, as offered (for an image, the base64 string itself);\n"
    "- `MultipleChoiceMultipleAnswers`: one or more different `choices`;\n"
    '- `TextOrCall`: `[<one of the choices, a phone number>, "Text" | "Call"]`; the code that '
    "is sent is then asked as an ordinary `QuestionAndAnswer`.\n\n"
    "Answers are checked before anything is sent to Flinks: one that does not fit its challenge "
    "is a 422 `validation_error` naming the prompt."
)


class MfaIn(StrictBody):
    responses: dict[Prompt, Annotated[list[Answer], Field(min_length=1, max_length=10)]] = Field(
        min_length=1, max_length=10, description=MFA_ANSWERS
    )


NATIVE = (
    "A native app's flow (RFC 8252, RFC 7636): BASE64URL(SHA256(code_verifier)). The callback "
    "then sends the system browser to `return_url?flow_id=…&handoff_code=…`, and the app redeems "
    "the code with `POST /v1/flows/{flow_id}/handoff`. Anything but a well-formed S256 "
    "challenge is 400 `handoff_invalid`."
)


class OAuthSessionIn(StrictBody):
    institution: InstitutionId
    return_url: Url | None = Field(None, description="Exactly one of BFF_RETURN_URLS.")
    language: Language = "en"
    code_challenge: Annotated[str, MaxLen(256)] | None = Field(None, description=NATIVE)
    code_challenge_method: Annotated[str, MaxLen(16)] | None = Field(
        None, description="`S256` (`plain` is refused)."
    )


class HandoffIn(StrictBody):
    """Lengths are checked by the handoff itself: every refusal is the same `handoff_invalid`."""

    handoff_code: Annotated[str, MaxLen(256)]
    code_verifier: Annotated[str, MaxLen(256)]


class OAuthSessionOut(BaseModel):
    flow_id: str
    authorize_url: str
    expires_at: datetime


class ChallengeOut(BaseModel):
    type: str = Field(
        description="Flinks' challenge type: QuestionAndAnswer, MultipleChoice, "
        "MultipleChoiceMultipleAnswers, ImageSelection, TextOrCall (or another Flinks adds)."
    )
    prompt: str = Field(description="The question to show; answers are keyed by it.")
    choices: list[str] = Field(
        description="What Flinks offered to pick from, in order; empty when it offered nothing "
        "(a free-text answer). ImageSelection: base64 PNGs (show each as "
        "`data:image/png;base64,` + choice). TextOrCall: masked phone numbers."
    )


class MfaOut(BaseModel):
    challenges: list[ChallengeOut]
    attempt: int = Field(
        description="1 for a new question; 2, 3, ... when Flinks asks again after a wrong answer."
    )


FLOW_STATUS = (
    "`started`: waiting for the loginId. `authorizing`: the BFF is asking Flinks (a request "
    "answers this once it has waited BFF_AUTHORIZE_WAIT; the call goes on). `pending`: Flinks "
    "is still working and the BFF follows it. For these three, read the status again in a few "
    "seconds. `mfa_required`: answer `mfa.challenges`. `connected`, `failed`: final."
)


class FlowOut(BaseModel):
    flow_id: str
    kind: FlowKind
    status: FlowStatus = Field(description=FLOW_STATUS)
    institution: str | None = None
    mfa: MfaOut | None = Field(None, description="Only while `status` is `mfa_required`.")
    error: FlowError | None = None
    link_id: str | None = Field(None, description="The link a `connected` flow made.")
    created_at: datetime
    expires_at: datetime

    @classmethod
    def of(cls, flow: FlowRecord) -> FlowOut:
        return cls(
            flow_id=flow.flow_id,
            kind=flow.kind,
            status=flow.status,
            institution=flow.institution,
            mfa=_mfa(flow),
            error=flow.error,
            link_id=flow.link_id if flow.status == "connected" else None,
            created_at=flow.created_at,
            expires_at=flow.expires_at,
        )


def _mfa(flow: FlowRecord) -> MfaOut | None:
    if flow.status != "mfa_required":
        return None
    challenges = [
        ChallengeOut(type=c.type, prompt=c.prompt, choices=list(c.choices)) for c in flow.challenges
    ]
    return MfaOut(challenges=challenges, attempt=flow.attempt)
