"""FlinksCode and OAuth `error` -> outcome: complete, stable and safe to show a user."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.flinks import (
    FLINKS_CODE_OUTCOMES,
    FLINKS_ERROR,
    OAUTH_ERROR,
    OAUTH_ERROR_OUTCOMES,
    OutcomeKind,
    clean_flinks_code,
    failure_for_flinks_code,
    outcome_for_flinks_code,
    outcome_for_oauth_error,
)
from tests.flinks.fakes import NOT_FAILURES, SECTION_8_CODES

SNAKE_CASE = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")


def test_every_section_8_code_and_only_those_is_mapped() -> None:
    assert sorted(FLINKS_CODE_OUTCOMES) == sorted(SECTION_8_CODES)


@pytest.mark.parametrize("code", SECTION_8_CODES)
def test_each_code_has_a_stable_snake_case_code_and_a_plain_message(code: str) -> None:
    outcome = outcome_for_flinks_code(code)

    assert outcome.code == code.lower()
    assert SNAKE_CASE.fullmatch(outcome.code)
    assert outcome.message.endswith(".")
    assert "Flinks" not in outcome.message
    assert code not in outcome.message
    expected_kind = OutcomeKind.FAILURE
    if code in NOT_FAILURES:
        expected_kind = OutcomeKind.SUCCESS if code in {"OK", "CREATED"} else OutcomeKind.PENDING
    assert outcome.kind is expected_kind


def test_api_codes_are_unique() -> None:
    codes = [o.code for o in FLINKS_CODE_OUTCOMES.values()]
    codes += [FLINKS_ERROR.code, OAUTH_ERROR.code]
    codes += [o.code for o in OAUTH_ERROR_OUTCOMES.values()]
    assert len(codes) == len(set(codes))


@pytest.mark.parametrize(
    ("code", "can_retry", "can_retry_mfa"),
    [
        ("INVALID_SECURITY_RESPONSE", True, True),
        ("INVALID_SECURITY_RESPONSE_NO_RETRY", True, False),
        ("UNKNOWN_CHALLENGE_KEY", True, True),
        ("SECURITYRESPONSES_INCOMPLETE", True, True),
        ("INVALID_LOGIN", True, False),
        ("RETRY_LATER", True, False),
        ("DISABLED_LOGIN", False, False),
        ("INVALID_REQUEST", False, False),
        ("CUSTOMER_NOT_FOUND", False, False),
    ],
)
def test_retry_advice(code: str, can_retry: bool, can_retry_mfa: bool) -> None:
    outcome = outcome_for_flinks_code(code)
    assert (outcome.can_retry, outcome.can_retry_mfa) == (can_retry, can_retry_mfa)


@pytest.mark.parametrize("code", [None, "", "NOT_A_REAL_CODE", "invalid_login"])
def test_unknown_codes_are_flinks_error(code: str | None) -> None:
    assert outcome_for_flinks_code(code) is FLINKS_ERROR
    assert FLINKS_ERROR.code == "flinks_error"
    assert FLINKS_ERROR.can_retry


@pytest.mark.parametrize("code", sorted(NOT_FAILURES))
def test_a_success_or_pending_code_cannot_describe_a_failure(code: str) -> None:
    assert failure_for_flinks_code(code) is FLINKS_ERROR


def test_a_failure_code_describes_a_failure() -> None:
    assert failure_for_flinks_code("DISABLED_LOGIN").code == "disabled_login"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("INVALID_LOGIN", "INVALID_LOGIN"),
        ("BANK MAINTENANCE_RETRY_LATER", "BANK MAINTENANCE_RETRY_LATER"),
        ("invalid_login", None),
        ("<script>", None),
        ("A" * 65, None),
        ("", None),
        (401, None),
        (None, None),
    ],
)
def test_clean_flinks_code(value: object, expected: str | None) -> None:
    assert clean_flinks_code(value) == expected


@pytest.mark.parametrize(
    ("error", "code", "can_retry"),
    [
        ("access_denied", "oauth_access_denied", True),
        ("invalid_request", "oauth_invalid_request", False),
        ("server_error", "oauth_server_error", True),
        ("temporarily_unavailable", "oauth_temporarily_unavailable", True),
        ("ACCESS_DENIED", "oauth_error", True),
        ("unsupported_response_type", "oauth_error", True),
        (None, "oauth_error", True),
    ],
)
def test_oauth_errors(error: str | None, code: str, can_retry: bool) -> None:
    outcome = outcome_for_oauth_error(error)
    assert (outcome.code, outcome.can_retry, outcome.kind) == (code, can_retry, OutcomeKind.FAILURE)


CLOSED_OAUTH_SET = {OAUTH_ERROR, *OAUTH_ERROR_OUTCOMES.values()}


@given(st.text(max_size=200))
def test_any_oauth_error_maps_into_the_closed_set_without_echoing_it(error: str) -> None:
    outcome = outcome_for_oauth_error(error)
    assert outcome in CLOSED_OAUTH_SET
    if len(error) > 3:
        assert error not in outcome.message
