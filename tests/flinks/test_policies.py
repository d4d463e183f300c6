"""Retry policy arithmetic, Retry-After parsing, and per-call timeouts."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from app.flinks import FlinksTimeouts, RetryPolicy
from app.flinks.policies import Deadline, parse_retry_after


def test_delays_grow_exponentially_up_to_the_cap_and_stop_at_the_last_attempt() -> None:
    policy = RetryPolicy(attempts=5, base=0.1, cap=0.5, random=lambda: 1.0)

    delays = [policy.delay_before_retry(n) for n in range(1, 6)]

    assert delays[:4] == pytest.approx([0.1, 0.2, 0.4, 0.5])
    assert delays[4] is None


def test_full_jitter_scales_the_whole_delay() -> None:
    assert RetryPolicy(random=lambda: 0.0).delay_before_retry(1) == 0.0
    assert RetryPolicy(random=lambda: 0.25).delay_before_retry(2) == pytest.approx(0.05)


def test_retry_after_is_honoured_up_to_the_cap_and_ends_retries_beyond_it() -> None:
    policy = RetryPolicy(cap=1.0, random=lambda: 0.5)

    assert policy.delay_before_retry(1, retry_after=0.8) == 0.8
    assert policy.delay_before_retry(1, retry_after=0.0) == pytest.approx(0.05)
    assert policy.delay_before_retry(1, retry_after=1.5) is None


@pytest.mark.parametrize("kwargs", [{"attempts": 0}, {"base": 0.0}, {"base": 2.0, "cap": 1.0}])
def test_nonsense_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="RetryPolicy"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


NOW = datetime(2026, 1, 21, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7", 7.0),
        (" 0 ", 0.0),
        ("Wed, 21 Jan 2026 12:00:30 GMT", 30.0),
        ("Wed, 21 Jan 2026 11:00:00 GMT", 0.0),
        ("-1", None),
        ("1.5", None),
        ("soon", None),
        ("", None),
        ("\u0661", None),  # an Arabic-Indic digit: isdigit() but not HTTP
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


def test_timeouts_are_explicit_for_every_phase() -> None:
    timeouts = FlinksTimeouts()

    assert timeouts.for_attempt(timeouts.authorize_read, 300.0) == httpx.Timeout(
        connect=3.0, read=240.0, write=5.0, pool=2.0
    )
    assert timeouts.mint_read < timeouts.authorize_read


def test_no_timeout_of_an_attempt_outlasts_the_deadline() -> None:
    timeouts = FlinksTimeouts()

    assert timeouts.for_attempt(timeouts.authorize_read, 2.5) == httpx.Timeout(
        connect=2.5, read=2.5, write=2.5, pool=2.0
    )


def test_a_part_of_an_operation_never_outlasts_the_whole() -> None:
    now = [100.0]
    whole = Deadline.after(10, lambda: now[0])

    assert whole.within(3).remaining() == 3
    now[0] = 108
    assert whole.within(3).remaining() == 2
    assert whole.remaining() == 2


@pytest.mark.parametrize("field", ["deadline", "authorize_deadline", "connect"])
def test_deadlines_and_timeouts_must_be_positive(field: str) -> None:
    with pytest.raises(ValueError, match="> 0"):
        FlinksTimeouts(**{field: 0.0})
