"""The circuit breaker: every way a call can end settles it, and a probe never jams it open."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import httpx
import pytest
from pydantic import SecretStr

from app.flinks import (
    MAX_BODY_BYTES,
    BreakerState,
    CircuitBreaker,
    FlinksCircuitOpen,
    FlinksClient,
    FlinksError,
    FlinksUnavailable,
)
from app.flinks.policies import RetryPolicy
from tests.flinks.fakes import API_URL, CUSTOMER_ID, SECRET

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
TOKEN = "t" * 36


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Boom(Exception):
    pass


async def settle(breaker: CircuitBreaker, *, failed: bool | None = None) -> None:
    """One call through the breaker with the verdict `failed` (None: ends without one)."""
    async with breaker.call("x") as call:
        if failed is not None:
            call.record(failed=failed)


async def test_opens_after_consecutive_failures_and_probes_after_the_pause() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=3, reset_after=10, clock=clock)
    for _ in range(2):
        await settle(breaker, failed=True)
    await settle(breaker)  # a success resets the count
    for _ in range(3):
        await settle(breaker, failed=True)
    assert breaker.state is OPEN
    with pytest.raises(FlinksCircuitOpen) as refused:
        await settle(breaker)
    assert refused.value.retry_after == 10
    assert refused.value.may_have_been_sent is False
    clock.now = 10
    async with breaker.call("x") as probe:  # the one probe
        assert breaker.state is HALF_OPEN
        with pytest.raises(FlinksCircuitOpen):
            await settle(breaker)  # others wait for the probe
        probe.record(failed=True)
    assert breaker.state is OPEN  # a failed probe opens it again at once
    clock.now = 20
    await settle(breaker)
    assert breaker.state is CLOSED
    await settle(breaker)
    assert breaker.refused == 2


async def boom(breaker: CircuitBreaker, *, failed: bool | None = None) -> None:
    """A call whose body raises, after recording the verdict `failed` (None: without one)."""
    async with breaker.call("x") as call:
        if failed is not None:
            call.record(failed=failed)
        raise Boom


async def test_an_exception_without_a_verdict_is_a_failure_and_a_verdict_wins() -> None:
    breaker = CircuitBreaker(failure_threshold=2, reset_after=10, clock=Clock())
    with pytest.raises(Boom):
        await boom(breaker)
    with pytest.raises(Boom):
        await boom(breaker, failed=False)  # the answer was fine; what failed came after
    assert breaker.state is CLOSED
    for _ in range(2):
        with pytest.raises(Boom):
            await boom(breaker)
    assert breaker.state is OPEN


async def test_a_cancelled_probe_frees_the_slot_for_the_next_call() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, reset_after=10, clock=clock)
    await settle(breaker, failed=True)
    clock.now = 10
    with pytest.raises(asyncio.CancelledError):
        async with breaker.call("x"):
            raise asyncio.CancelledError
    assert breaker.state is HALF_OPEN  # no verdict: still waiting for a probe
    await settle(breaker)  # the next call is the probe, at once
    assert breaker.state is CLOSED


async def test_while_open_only_the_probe_decides() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=2, reset_after=10, clock=clock)
    early_ok = breaker.call("x")
    early_failed = breaker.call("x")
    await early_ok.__aenter__()
    await early_failed.__aenter__()
    await settle(breaker, failed=True)
    await settle(breaker, failed=True)
    assert breaker.state is OPEN
    early_ok.record(failed=False)
    await early_ok.__aexit__(None, None, None)  # went out before the circuit opened
    assert breaker.state is OPEN
    clock.now = 10
    async with breaker.call("x") as probe:
        early_failed.record(failed=True)
        await early_failed.__aexit__(None, None, None)
        probe.record(failed=False)
    assert breaker.state is CLOSED


async def test_a_breaker_call_is_used_once() -> None:
    breaker = CircuitBreaker()
    call = breaker.call("x")
    async with call:
        pass
    with pytest.raises(RuntimeError):
        async with call:
            pass


def test_configuration_is_checked() -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreaker(failure_threshold=0)
    with pytest.raises(ValueError, match="reset_after"):
        CircuitBreaker(reset_after=0)


# Through the client: every way the probe's exchange can end.

Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]


def token_reply() -> httpx.Response:
    return httpx.Response(200, json={"HttpStatusCode": 200, "Token": TOKEN})


def raising(exc: BaseException) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


PROBES: dict[str, tuple[Handler, BreakerState]] = {
    "success": (lambda _: token_reply(), CLOSED),
    "5xx": (lambda _: httpx.Response(503, json={"HttpStatusCode": 503}), OPEN),
    "429": (lambda _: httpx.Response(429, json={"HttpStatusCode": 429}), OPEN),
    "timeout": (raising(httpx.ReadTimeout("slow")), OPEN),
    "connect-error": (raising(httpx.ConnectError("refused")), OPEN),
    # Flinks answered (200) with a body we cannot use: it is up, so the probe closes it.
    "decoding-error": (
        lambda _: httpx.Response(200, headers={"Content-Encoding": "gzip"}, content=b"not gzip"),
        CLOSED,
    ),
    "body-over-cap": (lambda _: httpx.Response(200, content=b"x" * (MAX_BODY_BYTES + 1)), CLOSED),
    "5xx-body-over-cap": (lambda _: httpx.Response(502, content=b"x" * (MAX_BODY_BYTES + 1)), OPEN),
    "unexpected-exception": (raising(Boom()), OPEN),
}


class Upstream:
    """Flinks behind MockTransport: each request is answered by the next handler."""

    def __init__(self, *handlers: Handler) -> None:
        self.handlers = list(handlers)
        self.sent = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.sent += 1
        reply = self.handlers.pop(0)(request)
        return reply if isinstance(reply, httpx.Response) else await reply


def client_over(http: httpx.AsyncClient, breaker: CircuitBreaker) -> FlinksClient:
    return FlinksClient(
        http,
        api_url=API_URL,
        customer_id=CUSTOMER_ID,
        secret_key=SecretStr(SECRET),
        mint_retry=RetryPolicy(attempts=1),
        breaker=breaker,
    )


@pytest.mark.parametrize(("probe", "after"), PROBES.values(), ids=PROBES.keys())
async def test_every_way_a_probe_ends_leaves_a_definite_state_that_recovers(
    probe: Handler, after: BreakerState
) -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, reset_after=5, clock=clock)
    upstream = Upstream(lambda _: httpx.Response(503), probe, lambda _: token_reply())
    async with httpx.AsyncClient(transport=httpx.MockTransport(upstream)) as http:
        flinks = client_over(http, breaker)
        with pytest.raises(FlinksUnavailable):
            await flinks.generate_authorize_token()
        assert breaker.state is OPEN
        clock.now = 5

        with contextlib.suppress(FlinksError, Boom):  # the probe, however it ends
            await flinks.generate_authorize_token()
        assert breaker.state is after
        if after is OPEN:
            with pytest.raises(FlinksCircuitOpen):
                await flinks.generate_authorize_token()
        clock.now = 10
        token = await flinks.generate_authorize_token()

    assert token.value.get_secret_value() == TOKEN
    assert breaker.state is CLOSED
    assert upstream.sent == 3  # opened, probed, recovered: nothing more, nothing less


async def test_a_probe_cancelled_mid_call_does_not_jam_the_breaker() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, reset_after=5, clock=clock)
    probe_started = asyncio.Event()

    async def hang(_: httpx.Request) -> httpx.Response:
        probe_started.set()
        await asyncio.Event().wait()  # never answers: the caller gives up first
        raise AssertionError("unreachable")

    upstream = Upstream(lambda _: httpx.Response(503), hang, lambda _: token_reply())
    async with httpx.AsyncClient(transport=httpx.MockTransport(upstream)) as http:
        flinks = client_over(http, breaker)
        with pytest.raises(FlinksUnavailable):
            await flinks.generate_authorize_token()
        clock.now = 5
        probe = asyncio.create_task(flinks.generate_authorize_token())
        await probe_started.wait()
        assert breaker.state is HALF_OPEN
        with pytest.raises(FlinksCircuitOpen):
            await flinks.generate_authorize_token()  # one probe at a time
        probe.cancel()
        with pytest.raises(asyncio.CancelledError):
            await probe

        assert breaker.state is HALF_OPEN  # no verdict, and the slot is free again
        token = await flinks.generate_authorize_token()  # at once: no new pause

    assert token.value.get_secret_value() == TOKEN
    assert breaker.state is CLOSED
    assert breaker.refused == 1


async def test_an_open_circuit_sends_nothing_and_recovers_by_itself() -> None:
    clock = Clock()
    sent: list[str] = []
    failing = True

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.url.path)
        if failing:
            return httpx.Response(503, json={"HttpStatusCode": 503})
        return token_reply()

    async def no_sleep(_: float) -> None:
        return None

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = FlinksClient(
            http,
            api_url=API_URL,
            customer_id=CUSTOMER_ID,
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
        assert client.breaker.refused == 11
        failing = False
        clock.now = 5
        token = await client.generate_authorize_token()
        assert token.value.get_secret_value() == TOKEN
        assert client.breaker.state is BreakerState.CLOSED
