"""The OAuth dance, step by step, as tests drive it."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.integration.conftest import ANSWERS, PASSWORD

RETURN_URL = "http://127.0.0.1:8000/"
REDIRECT_URI = "http://127.0.0.1:8000/v1/oauth/callback"


@dataclass(frozen=True)
class Callback:
    """The BFF-relative callback URL the bank sent the browser to, and its parts."""

    path_and_query: str
    state: str
    login_id: str | None


async def start(client: httpx.AsyncClient, **params: str) -> httpx.Response:
    query = {"institution": "FlinksCapital", "return_url": RETURN_URL, **params}
    return await client.get("/v1/oauth/start", params=query)


async def bank_login(
    sandbox_http: httpx.AsyncClient,
    bank_url: str,
    username: str,
    *,
    deny: bool = False,
    password: str = PASSWORD,
) -> Callback:
    """The sandbox's non-HTML shortcut for the bank page; returns where the bank redirects."""
    response = await sandbox_http.post(
        "/__sandbox/oauth/complete",
        json={
            "session": bank_url,
            "username": username,
            "password": password,
            "answers": ANSWERS,
            "deny": deny,
        },
    )
    assert response.status_code == 200, response.text
    location: str = response.json()["location"]
    assert location.startswith(REDIRECT_URI + "?"), location
    parts = urlsplit(location)
    query = parse_qs(parts.query)
    return Callback(
        path_and_query=f"{parts.path}?{parts.query}",
        state=query["state"][0],
        login_id=query.get("loginId", [None])[0],
    )


async def linked_callback(
    client: httpx.AsyncClient,
    sandbox_http: httpx.AsyncClient,
    username: str,
    *,
    deny: bool = False,
) -> Callback:
    started = await start(client)
    assert started.status_code == 303, started.text
    return await bank_login(sandbox_http, started.headers["location"], username, deny=deny)


def returned(response: httpx.Response) -> dict[str, list[str]]:
    """The query the BFF sent the browser back with (asserting the shape of the redirect)."""
    assert response.status_code == 303, response.text
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == RETURN_URL
    return parse_qs(location.query)
