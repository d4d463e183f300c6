"""Flinks request and response payloads, with Flinks' own PascalCase field names.

Responses ignore fields we do not use and tolerate missing optional ones. Identifiers and
secrets are left out of every repr, and validation errors never quote their input (pydantic's
message would otherwise carry a token or RequestId into a traceback).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

# The languages Flinks' API and Connect take (the client's own: it imports nothing of the app's;
# the domain's `app.flows.records.Language` must fit in it).
FlinksLanguage = Literal["en", "fr"]


class _Response(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    def to_json(self) -> dict[str, Any]:
        """The body to send: every field that is set, in declaration order, without nulls."""
        return self.model_dump(mode="json", exclude_none=True)


class AuthorizeRequest(_Request):
    LoginId: str | None = Field(default=None, min_length=1, repr=False)
    MostRecentCached: bool | None = None
    Save: bool | None = None
    Language: FlinksLanguage | None = None
    Tag: str | None = None
    RequestId: str | None = Field(default=None, min_length=1, repr=False)
    SecurityResponses: dict[str, list[str]] | None = Field(default=None, repr=False)


class Link(_Response):
    rel: str | None = None
    href: str | None = None


class TokenResponse(_Response):
    """200 from /GenerateAuthorizeToken."""

    HttpStatusCode: int | None = None
    Token: SecretStr = Field(min_length=1)


class LoginInfo(_Response):
    Id: str | None = Field(default=None, repr=False)
    Username: str | None = Field(default=None, repr=False)
    IsScheduledRefresh: bool | None = None
    # UTC, without an offset ("2026-01-21T20:47:47.145999"); kept as Flinks wrote it.
    LastRefresh: str | None = None
    Type: str | None = None


class AuthorizeSuccess(_Response):
    """200 from /Authorize: the session is open."""

    HttpStatusCode: int | None = None
    Links: list[Link] = []
    InstitutionName: str | None = None
    Login: LoginInfo | None = None
    InstitutionId: int | None = None
    Institution: str | None = None
    RequestId: str = Field(min_length=1, repr=False)
    Tag: str | None = None


class SecurityChallenge(_Response):
    """One MFA challenge. `Iterables` are its choices (public integrations, contract 12.1 #1):
    answers to pick from, base64 PNGs for `ImageSelection`, masked phone numbers for
    `TextOrCall`."""

    Type: str | None = None
    Prompt: str = Field(min_length=1)
    Iterables: list[str] | None = Field(default=None, repr=False)


class AuthorizeMfaRequired(_Response):
    """203 from /Authorize (or a 401 that asks a new question after a wrong answer): answer the
    challenges with the same RequestId."""

    HttpStatusCode: int | None = None
    Links: list[Link] = []
    SecurityChallenges: list[SecurityChallenge] = Field(min_length=1)
    Institution: str | None = None
    RequestId: str = Field(min_length=1, repr=False)


class FlinksStatusResponse(_Response):
    """202 (pending, dispatched) and error bodies."""

    HttpStatusCode: int | None = None
    Message: str | None = Field(default=None, repr=False)
    FlinksCode: str | None = None
    Links: list[Link] = []
    RequestId: str | None = Field(default=None, repr=False)
    Institution: str | None = None
