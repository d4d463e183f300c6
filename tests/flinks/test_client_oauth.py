"""GET /v3/oauth/authorize: the request, the Location handling, and failures."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from app.flinks import (
    FlinksBadResponse,
    FlinksClient,
    FlinksRejected,
    FlinksTimeout,
    FlinksUnavailable,
    RetryPolicy,
)
from tests.flinks.fakes import (
    MINT,
    OAUTH,
    SECRET,
    STATE,
    FakeFlinks,
    make_client,
    respond,
    status_body,
)

BANK_URL = "https://bank.example/login?session=abc"
REDIRECT_URI = "https://bff.example/v1/oauth/callback"


def redirect_to(location: str, status: int = 302) -> httpx.Response:
    return httpx.Response(status, headers={"Location": location}, text="<form>...</form>")


async def start(flinks: FlinksClient, tag: str | None = None) -> str:
    return await flinks.oauth_authorize_location(
        institution="FlinksCapital", redirect_uri=REDIRECT_URI, state=STATE, tag=tag
    )


async def test_the_request_carries_a_fresh_token_and_the_documented_query(
    fake: FakeFlinks, flinks: FlinksClient
) -> None:
    fake.script(OAUTH, redirect_to(BANK_URL))

    location = await flinks.oauth_authorize_location(
        institution="FlinksCapital",
        redirect_uri=REDIRECT_URI,
        state=STATE,
        language="fr",
        tag="flow-9",
    )

    assert location == BANK_URL
    _, request = fake.requests
    assert request.method == "GET"
    assert (request.url.scheme, request.url.host, request.url.path) == (
        "https",
        "toolbox-api.private.fin.ag",
        "/v3/oauth/authorize",
    )
    assert list(request.url.params.multi_items()) == [
        ("institution_id", "FlinksCapital"),
        ("redirect_uri", REDIRECT_URI),
        ("state", STATE),
        ("lang", "fr"),
        ("tag", "flow-9"),
    ]
    assert request.headers["flinks-auth-key"] == fake.minted[0]
    assert SECRET not in str(request.headers)
    assert request.content == b""


async def test_no_tag_means_no_tag_parameter(fake: FakeFlinks, flinks: FlinksClient) -> None:
    fake.script(OAUTH, redirect_to(BANK_URL, 303))

    assert await start(flinks) == BANK_URL
    assert "tag" not in fake.calls(OAUTH)[0].url.params


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("/bank/login?x=1", "https://toolbox-api.private.fin.ag/bank/login?x=1"),
        ("login", "https://toolbox-api.private.fin.ag/v3/oauth/login"),
        ("//bank.example/login", "https://bank.example/login"),
    ],
)
async def test_a_relative_location_is_resolved_against_the_request(
    fake: FakeFlinks, flinks: FlinksClient, location: str, expected: str
) -> None:
    fake.script(OAUTH, redirect_to(location))

    assert await start(flinks) == expected


async def test_redirects_are_never_followed_even_if_the_shared_client_would(
    fake: FakeFlinks, retry: RetryPolicy
) -> None:
    transport = httpx.MockTransport(fake.handle)
    async with httpx.AsyncClient(transport=transport, follow_redirects=True) as following:
        fake.script(OAUTH, redirect_to("https://toolbox-api.private.fin.ag/v3/oauth/authorize"))

        location = await start(make_client(following, retry))

    assert location == "https://toolbox-api.private.fin.ag/v3/oauth/authorize"
    assert [r.url.path.rsplit("/", 1)[-1] for r in fake.requests] == [MINT, "authorize"]


async def test_plain_http_locations_are_accepted_only_from_a_plain_http_flinks(
    fake: FakeFlinks, http: httpx.AsyncClient, retry: RetryPolicy
) -> None:
    sandbox = make_client(http, retry, api_url="http://127.0.0.1:8001")
    fake.script(OAUTH, redirect_to("http://127.0.0.1:8001/bank?state=s"))

    assert await start(sandbox) == "http://127.0.0.1:8001/bank?state=s"


@pytest.mark.parametrize(
    "reply",
    [
        respond(200, {"HttpStatusCode": 200}),
        httpx.Response(302, text="no location"),
        redirect_to(""),
        redirect_to("http://bank.example/login"),
        redirect_to("javascript:alert(1)"),
        redirect_to("data:text/html,hi"),
        redirect_to("https://flinks.example@evil.example/"),
        redirect_to("https:\\\\evil.example/"),
        redirect_to("https://bank .example/"),
        redirect_to("https:///no-host"),
        redirect_to(BANK_URL, 301),
        redirect_to(BANK_URL, 307),
    ],
    ids=[
        "200",
        "302-without-location",
        "empty-location",
        "plain-http",
        "javascript",
        "data",
        "user-info",
        "backslashes",
        "space",
        "no-host",
        "301",
        "307",
    ],
)
async def test_anything_but_a_redirect_to_a_usable_url_is_a_bad_response(
    fake: FakeFlinks, flinks: FlinksClient, reply: httpx.Response
) -> None:
    fake.script(OAUTH, reply)

    with pytest.raises(FlinksBadResponse) as caught:
        await start(flinks)

    assert caught.value.endpoint == OAUTH
    assert len(fake.calls(OAUTH)) == 1


@pytest.mark.parametrize(
    ("reply", "error", "check"),
    [
        (
            respond(401, status_body(401, "UNAUTHORIZED")),
            FlinksRejected,
            lambda e: (e.status, e.flinks_code) == (401, "UNAUTHORIZED"),
        ),
        (httpx.Response(404, text="Not Found"), FlinksRejected, lambda e: e.status == 404),
        (respond(503), FlinksUnavailable, lambda e: e.status == 503),
        (httpx.ReadTimeout, FlinksTimeout, lambda e: e.may_have_been_sent),
    ],
    ids=["401", "404", "503", "read-timeout"],
)
async def test_failures_are_typed_and_not_retried_once_sent(
    fake: FakeFlinks,
    flinks: FlinksClient,
    reply: httpx.Response | type[httpx.RequestError],
    error: type[Exception],
    check: Callable[[object], bool],
) -> None:
    fake.script(OAUTH, reply, redirect_to(BANK_URL))

    with pytest.raises(error) as caught:
        await start(flinks)

    assert check(caught.value)
    assert len(fake.calls(OAUTH)) == 1


async def test_a_connect_error_is_retried_with_a_fresh_token(
    fake: FakeFlinks, flinks: FlinksClient
) -> None:
    fake.script(OAUTH, httpx.ConnectError, redirect_to(BANK_URL))

    assert await start(flinks) == BANK_URL
    assert [r.headers["flinks-auth-key"] for r in fake.calls(OAUTH)] == fake.minted
    assert len(set(fake.minted)) == 2


async def test_an_unknown_language_is_refused_before_any_call(
    fake: FakeFlinks, flinks: FlinksClient
) -> None:
    with pytest.raises(ValueError, match="language"):
        await flinks.oauth_authorize_location(
            institution="FlinksCapital",
            redirect_uri=REDIRECT_URI,
            state=STATE,
            language="de",  # type: ignore[arg-type]
        )
    assert fake.requests == []
