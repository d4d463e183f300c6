"""Each operation has a total deadline over its attempts, backoffs and token mints.

Time here is a `FakeTime`: a slow Flinks is one that moves the clock, and the retry backoff
moves it too, so the totals are exact and nothing waits for real, except where the point is
the real HTTP stack (a server that never answers).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from pydantic import SecretStr

from app.flinks import (
    BreakerState,
    CircuitBreaker,
    FlinksClient,
    FlinksTimeout,
    FlinksTimeouts,
    FlinksUnavailable,
    RetryPolicy,
)
from tests.flinks.fakes import (
    AUTHORIZE,
    LOGIN_ID,
    MINT,
    OAUTH,
    STATE,
    FakeFlinks,
    FakeTime,
    connected_body,
    make_client,
    respond,
)

TIMEOUTS = FlinksTimeouts(
    mint_read=5, oauth_read=10, authorize_read=55, deadline=10, authorize_deadline=55
)


@pytest.fixture
def clock() -> FakeTime:
    return FakeTime()


@pytest.fixture
def flinks(http: httpx.AsyncClient, clock: FakeTime) -> FlinksClient:
    retry = RetryPolicy(attempts=3, sleep=clock.sleep, random=lambda: 0.5)
    return make_client(http, retry, timeouts=TIMEOUTS, clock=clock)


def read_timeout(request: httpx.Request) -> float:
    timeout: float = request.extensions["timeout"]["read"]
    return timeout


def slow(
    clock: FakeTime, seconds: float, reply: httpx.Response | type[httpx.RequestError]
) -> Callable[[httpx.Request], httpx.Response]:
    """A reply after `seconds` (or when the attempt's own read timeout fires, if sooner)."""

    def answer(request: httpx.Request) -> httpx.Response:
        clock.now += min(seconds, read_timeout(request))
        if isinstance(reply, httpx.Response):
            return reply
        raise reply("simulated failure", request=request)

    return answer


async def test_three_slow_mint_attempts_end_within_the_deadline(
    fake: FakeFlinks, flinks: FlinksClient, clock: FakeTime
) -> None:
    fake.script(MINT, *[slow(clock, 4, httpx.ReadTimeout)] * 3)

    with pytest.raises(FlinksTimeout):
        await flinks.generate_authorize_token()

    # Before: three attempts of 5 s each, 15 s and the backoffs. Now the third gets what is left.
    reads = [read_timeout(r) for r in fake.calls(MINT)]
    assert reads == pytest.approx([5, 5, 10 - 4 - 0.05 - 4 - 0.1])
    assert clock.sleeps == pytest.approx([0.05, 0.1])
    assert clock.now == pytest.approx(10)


async def test_no_retry_starts_that_could_not_finish_before_the_deadline(
    fake: FakeFlinks, flinks: FlinksClient, clock: FakeTime
) -> None:
    fake.script(MINT, *[slow(clock, 4.5, respond(503))] * 2, respond(200, {"Token": "unused"}))

    with pytest.raises(FlinksUnavailable) as caught:
        await flinks.generate_authorize_token()

    # 0.95 s were left for a third try: the error we have, not a timeout of a hopeless retry.
    assert caught.value.status == 503
    assert len(fake.calls(MINT)) == 2
    assert clock.sleeps == pytest.approx([0.05])


async def test_the_mint_counts_against_the_authorize_deadline(
    fake: FakeFlinks, flinks: FlinksClient, clock: FakeTime
) -> None:
    fake.script(MINT, slow(clock, 3, respond(200, {"HttpStatusCode": 200, "Token": "tok"})))
    fake.script(AUTHORIZE, respond(200, connected_body()))

    await flinks.authorize_live(login_id=LOGIN_ID)

    assert read_timeout(fake.calls(MINT)[0]) == 5
    assert read_timeout(fake.calls(AUTHORIZE)[0]) == pytest.approx(55 - 3)


async def test_a_presend_failure_is_not_retried_without_time_for_another_try(
    fake: FakeFlinks, flinks: FlinksClient, clock: FakeTime
) -> None:
    fake.script(AUTHORIZE, slow(clock, 54.5, httpx.ConnectError))

    with pytest.raises(FlinksUnavailable) as caught:
        await flinks.authorize_live(login_id=LOGIN_ID)

    assert not caught.value.may_have_been_sent
    assert len(fake.calls(AUTHORIZE)) == 1
    assert len(fake.calls(MINT)) == 1


async def test_nothing_is_sent_once_the_deadline_has_passed(
    fake: FakeFlinks, flinks: FlinksClient, clock: FakeTime
) -> None:
    def just_too_late(_: httpx.Request) -> httpx.Response:
        clock.now = 55
        return respond(200, {"HttpStatusCode": 200, "Token": "tok"})

    fake.script(MINT, just_too_late)

    with pytest.raises(FlinksTimeout) as caught:
        await flinks.authorize_live(login_id=LOGIN_ID)

    assert not caught.value.may_have_been_sent
    assert fake.calls(AUTHORIZE) == []
    assert flinks.breaker.state is BreakerState.CLOSED  # our budget, not a Flinks failure


async def test_an_mfa_answer_has_the_authorize_deadline_and_is_never_resent(
    fake: FakeFlinks, flinks: FlinksClient, clock: FakeTime
) -> None:
    fake.script(AUTHORIZE, slow(clock, 2, httpx.ReadTimeout))

    with pytest.raises(FlinksTimeout) as caught:
        await flinks.answer_mfa(token=_token(), request_id="r", responses={"q": ["a"]})

    assert caught.value.may_have_been_sent
    assert [read_timeout(r) for r in fake.calls(AUTHORIZE)] == [55]


async def test_the_oauth_start_shares_one_deadline_with_its_mint(
    fake: FakeFlinks, flinks: FlinksClient, clock: FakeTime
) -> None:
    fake.script(MINT, slow(clock, 4, respond(200, {"HttpStatusCode": 200, "Token": "tok"})))
    fake.script(OAUTH, respond(302, headers={"Location": "https://bank.example/login"}))

    location = await flinks.oauth_authorize_location(
        institution="FlinksCapital", redirect_uri="https://bff.example/cb", state=STATE
    )

    assert location == "https://bank.example/login"
    assert read_timeout(fake.calls(OAUTH)[0]) == pytest.approx(10 - 4)


async def test_the_deadline_bounds_an_exchange_that_httpx_alone_would_not() -> None:
    """A transport that never answers (MockTransport applies no timeouts, like a server that
    trickles one byte per read timeout): the deadline ends the call, as a timeout that may have
    been sent, and the breaker counts it."""
    breaker = CircuitBreaker(failure_threshold=1)

    async def never(_: httpx.Request) -> httpx.Response:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async with httpx.AsyncClient(transport=httpx.MockTransport(never)) as http:
        flinks = FlinksClient(
            http,
            api_url="https://toolbox-api.private.fin.ag",
            customer_id="c",
            secret_key=_token(),
            timeouts=FlinksTimeouts(deadline=0.2),
            breaker=breaker,
        )
        with pytest.raises(FlinksTimeout) as caught:
            await flinks.generate_authorize_token()

    assert caught.value.may_have_been_sent
    assert type(caught.value.__cause__) is TimeoutError
    assert breaker.state is BreakerState.OPEN


@pytest.fixture
async def black_hole() -> AsyncIterator[tuple[str, list[int]]]:
    """A real server that accepts connections and never answers; yields its URL and a list
    that grows by one per connection."""
    connections: list[int] = []
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}", connections
        for writer in held:
            writer.close()


async def test_over_real_http_a_silent_flinks_costs_one_deadline_not_three_timeouts(
    black_hole: tuple[str, list[int]],
) -> None:
    url, connections = black_hole
    deadline = 0.5
    async with httpx.AsyncClient() as http:
        flinks = make_client(
            http, RetryPolicy(attempts=3), api_url=url, timeouts=FlinksTimeouts(deadline=deadline)
        )
        started = time.monotonic()
        with pytest.raises(FlinksTimeout):
            await flinks.generate_authorize_token()
        elapsed = time.monotonic() - started

    # Structural: one attempt, no retry that could not finish. Before: three 5 s attempts.
    assert len(connections) == 1
    assert elapsed < FlinksTimeouts().mint_read  # generous: the deadline is a tenth of it


def _token() -> SecretStr:
    return SecretStr("token-canary-x")
