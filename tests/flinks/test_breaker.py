from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr

from app.flinks import (
    BreakerState,
    CircuitBreaker,
    FlinksCircuitOpen,
    FlinksClient,
    FlinksUnavailable,
)
from app.flinks.policies import RetryPolicy


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_consecutive_failures_and_probes_after_the_pause() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=3, reset_after=10, clock=clock)
    for _ in range(2):
        breaker.before_call("x")
        breaker.record_failure()
    breaker.before_call("x")
    breaker.record_success()  # a success resets the count
    for _ in range(3):
        breaker.before_call("x")
        breaker.record_failure()
    assert breaker.state == "open"
    with pytest.raises(FlinksCircuitOpen) as refused:
        breaker.before_call("x")
    assert refused.value.retry_after == 10
    assert refused.value.may_have_been_sent is False
    clock.now = 10
    breaker.before_call("x")  # the one probe
    assert breaker.state == "half_open"
    with pytest.raises(FlinksCircuitOpen):
        breaker.before_call("x")  # others wait for the probe
    breaker.record_failure()
    assert breaker.state == "open"  # a failed probe opens it again at once
    clock.now = 20
    breaker.before_call("x")
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    breaker.before_call("x")


async def test_an_open_circuit_sends_nothing_and_recovers_by_itself() -> None:
    clock = Clock()
    sent: list[str] = []
    failing = True

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.url.path)
        if failing:
            return httpx.Response(503, json={"HttpStatusCode": 503})
        return httpx.Response(200, json={"HttpStatusCode": 200, "Token": "t" * 36})

    async def no_sleep(_: float) -> None:
        return None

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = FlinksClient(
            http,
            api_url="https://toolbox-api.private.fin.ag",
            customer_id="43387ca6-0391-4c82-857d-70d95f087ecb",
            secret_key=SecretStr("secret"),
            mint_retry=RetryPolicy(attempts=3, sleep=no_sleep),
            breaker=CircuitBreaker(failure_threshold=4, reset_after=5, clock=clock),
        )
        for _ in range(2):
            with pytest.raises(FlinksUnavailable):
                await client.generate_authorize_token()
        assert len(sent) == 4  # 2 calls: the first retried twice, the second once, then open
        for _ in range(10):
            with pytest.raises(FlinksCircuitOpen):
                await client.generate_authorize_token()
        assert len(sent) == 4  # nothing more reached Flinks
        failing = False
        clock.now = 5
        token = await client.generate_authorize_token()
        assert token.value.get_secret_value() == "t" * 36
        assert client.breaker.state is BreakerState.CLOSED
