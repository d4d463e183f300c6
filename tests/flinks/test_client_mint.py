"""/GenerateAuthorizeToken: the request, retries with capped jittered backoff, and failures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from app.flinks import (
    MAX_BODY_BYTES,
    FlinksBadResponse,
    FlinksClient,
    FlinksRejected,
    FlinksTimeout,
    FlinksUnavailable,
    RetryPolicy,
)
from tests.flinks.fakes import (
    BANKING_PATH,
    MINT,
    SECRET,
    FakeFlinks,
    RecordedSleeps,
    cycling,
    make_client,
    respond,
    status_body,
)


async def test_mint_sends_the_secret_key_and_no_body(
    fake: FakeFlinks, flinks: FlinksClient
) -> None:
    token = await flinks.generate_authorize_token()

    [request] = fake.requests
    assert request.method == "POST"
    assert request.url == f"https://toolbox-api.private.fin.ag{BANKING_PATH}/GenerateAuthorizeToken"
    assert request.headers["flinks-auth-key"] == SECRET
    assert request.headers["content-type"] == "application/json"
    assert request.headers["accept"] == "application/json"
    assert "authorization" not in request.headers
    assert "x-api-key" not in request.headers
    assert request.content == b""
    assert token.value.get_secret_value() == fake.minted[0]
    assert abs(token.minted_at - datetime.now(UTC)) < timedelta(seconds=5)


@pytest.mark.parametrize(
    "failure",
    [
        respond(503),
        respond(500, {"HttpStatusCode": 500}),
        respond(429),
        httpx.ConnectError,
        httpx.ConnectTimeout,
        httpx.ReadTimeout,
        httpx.RemoteProtocolError,
    ],
    ids=["503", "500", "429", "connect-error", "connect-timeout", "read-timeout", "protocol"],
)
async def test_mint_retries_transient_failures(
    fake: FakeFlinks,
    flinks: FlinksClient,
    sleeps: RecordedSleeps,
    failure: httpx.Response | type[httpx.RequestError],
) -> None:
    fake.script(MINT, failure)

    token = await flinks.generate_authorize_token()

    assert len(fake.calls(MINT)) == 2
    assert token.value.get_secret_value() == fake.minted[0]
    assert sleeps.delays == [0.5 * 0.1]


async def test_mint_gives_up_when_the_attempts_are_spent(
    fake: FakeFlinks, flinks: FlinksClient, sleeps: RecordedSleeps
) -> None:
    fake.script(MINT, respond(503), respond(502), respond(503), respond(200))

    with pytest.raises(FlinksUnavailable) as caught:
        await flinks.generate_authorize_token()

    assert len(fake.calls(MINT)) == 3
    assert caught.value.status == 503
    assert sleeps.delays == [0.05, 0.1]


async def test_mint_backoff_is_exponential_capped_and_fully_jittered(
    fake: FakeFlinks, http: httpx.AsyncClient, sleeps: RecordedSleeps
) -> None:
    draws = [0.9, 0.25, 0.999, 0.5, 0.0]
    policy = RetryPolicy(attempts=6, base=0.2, cap=1.0, sleep=sleeps, random=cycling(draws))
    fake.script(MINT, *[respond(503) for _ in range(5)])

    await make_client(http, policy).generate_authorize_token()

    ceilings = [0.2, 0.4, 0.8, 1.0, 1.0]  # base * 2**n, capped at 1 s
    assert sleeps.delays == pytest.approx([d * c for d, c in zip(draws, ceilings, strict=True)])
    assert all(0 <= delay <= policy.cap for delay in sleeps.delays)


async def test_mint_waits_out_a_short_retry_after(
    fake: FakeFlinks, flinks: FlinksClient, sleeps: RecordedSleeps
) -> None:
    fake.script(MINT, respond(429, headers={"Retry-After": "1"}))

    await flinks.generate_authorize_token()

    assert sleeps.delays == [1.0]


async def test_mint_does_not_hold_the_request_for_a_long_retry_after(
    fake: FakeFlinks, flinks: FlinksClient, sleeps: RecordedSleeps
) -> None:
    fake.script(MINT, respond(503, headers={"Retry-After": "30"}))

    with pytest.raises(FlinksUnavailable) as caught:
        await flinks.generate_authorize_token()

    assert caught.value.retry_after == 30.0
    assert len(fake.calls(MINT)) == 1
    assert sleeps.delays == []


async def test_a_refused_secret_key_is_rejected_without_retry_or_body_text(
    fake: FakeFlinks, flinks: FlinksClient
) -> None:
    fake.script(
        MINT, respond(401, status_body(401, "UNAUTHORIZED", "You must provide a valid auth key"))
    )

    with pytest.raises(FlinksRejected) as caught:
        await flinks.generate_authorize_token()

    assert (caught.value.status, caught.value.flinks_code) == (401, "UNAUTHORIZED")
    assert caught.value.endpoint == MINT
    assert "valid auth key" not in str(caught.value)
    assert len(fake.calls(MINT)) == 1


@pytest.mark.parametrize(
    "reply",
    [
        httpx.Response(200, content=b"<html>not json</html>"),
        httpx.Response(200, content=b"[" * 100_000),
        respond(200, {"HttpStatusCode": 200}),
        respond(200, {"HttpStatusCode": 200, "Token": ""}),
        respond(200, {"HttpStatusCode": 200, "Token": 42}),
        respond(200, ["Token"]),
        respond(201, {"Token": "t"}),
        respond(302, headers={"Location": "https://elsewhere.example/"}),
        httpx.Response(200, content=b"{" + b" " * MAX_BODY_BYTES + b"}"),
    ],
    ids=[
        "not-json",
        "deep-nesting",
        "no-token",
        "empty-token",
        "token-not-a-string",
        "list",
        "201",
        "redirect",
        "too-large",
    ],
)
async def test_unusable_mint_answers_are_bad_responses_and_not_retried(
    fake: FakeFlinks, flinks: FlinksClient, reply: httpx.Response
) -> None:
    fake.script(MINT, reply)

    with pytest.raises(FlinksBadResponse) as caught:
        await flinks.generate_authorize_token()

    assert caught.value.may_have_been_sent
    assert len(fake.calls(MINT)) == 1


async def test_timeouts_are_typed_and_say_whether_the_request_may_have_been_sent(
    fake: FakeFlinks, flinks: FlinksClient
) -> None:
    fake.script(MINT, *[httpx.ReadTimeout] * 3)
    with pytest.raises(FlinksTimeout) as read:
        await flinks.generate_authorize_token()

    fake.script(MINT, *[httpx.PoolTimeout] * 3)
    with pytest.raises(FlinksTimeout) as pool:
        await flinks.generate_authorize_token()

    assert read.value.may_have_been_sent
    assert not pool.value.may_have_been_sent
    assert isinstance(read.value.__cause__, httpx.ReadTimeout)
