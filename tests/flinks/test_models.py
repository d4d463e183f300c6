"""Flinks payload models: request serialisation, tolerant parsing, no identifiers in reprs."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.flinks.models import (
    AuthorizeMfaRequired,
    AuthorizeRequest,
    AuthorizeSuccess,
    FlinksStatusResponse,
    TokenResponse,
)
from tests.flinks.fakes import LOGIN_ID, REQUEST_ID, connected_body, mfa_body


def test_requests_serialise_without_null_fields_in_declaration_order() -> None:
    body = AuthorizeRequest(
        Tag="t", Language="en", Save=True, MostRecentCached=False, LoginId=LOGIN_ID
    ).to_json()

    assert list(body) == ["LoginId", "MostRecentCached", "Save", "Language", "Tag"]
    assert AuthorizeRequest(RequestId=REQUEST_ID, SecurityResponses={"q": ["a"]}).to_json() == {
        "RequestId": REQUEST_ID,
        "SecurityResponses": {"q": ["a"]},
    }


def test_requests_refuse_unknown_fields() -> None:
    with pytest.raises(ValidationError):
        AuthorizeRequest(Username="greatday")  # type: ignore[call-arg]


def test_responses_ignore_unknown_fields_and_tolerate_missing_optional_ones() -> None:
    full = AuthorizeSuccess.model_validate(connected_body() | {"Surprise": [1, 2]})
    minimal = AuthorizeSuccess.model_validate({"RequestId": REQUEST_ID})
    status = FlinksStatusResponse.model_validate({})

    assert full.Login is not None
    assert full.Login.Id == LOGIN_ID
    assert full.InstitutionId == 14
    assert (minimal.Login, minimal.Institution, minimal.Links) == (None, None, [])
    assert (status.FlinksCode, status.RequestId) == (None, None)


def test_a_challenge_needs_at_least_one_prompt() -> None:
    assert len(AuthorizeMfaRequired.model_validate(mfa_body("q1", "q2")).SecurityChallenges) == 2
    with pytest.raises(ValidationError):
        AuthorizeMfaRequired.model_validate(mfa_body())


def test_identifiers_and_tokens_stay_out_of_reprs_and_validation_errors() -> None:
    token = TokenResponse.model_validate({"Token": "token-canary-in-model"})
    success = AuthorizeSuccess.model_validate(connected_body())
    request = AuthorizeRequest(LoginId=LOGIN_ID, SecurityResponses={"q": ["secret-answer"]})
    with pytest.raises(ValidationError) as caught:
        AuthorizeSuccess.model_validate({"RequestId": 5, "Login": REQUEST_ID})

    shown = " ".join([repr(token), repr(success), repr(request), str(caught.value)])
    for value in ("token-canary-in-model", LOGIN_ID, REQUEST_ID, "secret-answer", "Greatday"):
        assert value not in shown
