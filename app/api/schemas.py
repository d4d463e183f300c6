"""Request and response bodies of the v1 API. Nothing here carries a loginId or RequestId out."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app.store import FlowKind, FlowRecord, FlowStatus

Language = Literal["en", "fr"]
Tag = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
FlowId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{22}$")]
Url = Annotated[str, StringConstraints(min_length=1, max_length=2048)]


class StrictBody(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AuthorizeTokenOut(BaseModel):
    authorize_token: str
    expires_at: datetime


class ConnectSessionIn(StrictBody):
    language: Language = "en"
    return_url: Url | None = None
    tag: Tag | None = None
    options: dict[str, str | bool | int] = Field(
        default_factory=dict,
        max_length=32,
        description='Allow-listed Flinks Connect parameters, e.g. {"consentEnable": true}.',
    )


class ConnectSessionOut(BaseModel):
    flow_id: str
    iframe_url: str
    connect_origin: str
    expires_at: datetime


class CompleteIn(StrictBody):
    login_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    institution: (
        Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")] | None
    ) = None
    account_ids: list[Annotated[str, StringConstraints(max_length=64)]] | None = Field(
        None, max_length=50
    )


Prompt = Annotated[str, StringConstraints(min_length=1, max_length=500)]
Answer = Annotated[str, StringConstraints(min_length=1, max_length=500)]


class MfaIn(StrictBody):
    responses: dict[Prompt, Annotated[list[Answer], Field(min_length=1, max_length=10)]] = Field(
        min_length=1, max_length=10
    )


class OAuthSessionIn(StrictBody):
    institution: Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")]
    return_url: Url | None = None
    language: Language = "en"


class OAuthSessionOut(BaseModel):
    flow_id: str
    authorize_url: str
    expires_at: datetime


class ChallengeOut(BaseModel):
    type: str
    prompt: str


class MfaOut(BaseModel):
    challenges: list[ChallengeOut]


class ErrorOut(BaseModel):
    code: str
    message: str


class FlowOut(BaseModel):
    flow_id: str
    kind: FlowKind
    status: FlowStatus
    institution: str | None = None
    mfa: MfaOut | None = None
    error: ErrorOut | None = None
    created_at: datetime
    expires_at: datetime

    @classmethod
    def of(cls, flow: FlowRecord) -> FlowOut:
        return cls(
            flow_id=flow.flow_id,
            kind=flow.kind,
            status=flow.status,
            institution=flow.institution,
            mfa=MfaOut(
                challenges=[ChallengeOut(type=c.type, prompt=c.prompt) for c in flow.challenges]
            )
            if flow.status == "mfa_required"
            else None,
            error=ErrorOut(code=flow.error.code, message=flow.error.message)
            if flow.error
            else None,
            created_at=flow.created_at,
            expires_at=flow.expires_at,
        )
