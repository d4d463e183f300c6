"""The flows a virtual user drives, each as a browser would, with a fresh cookie jar per flow.

- oauth:   GET /v1/oauth/start -> the sandbox's non-HTML bank shortcut -> GET the callback
           (the BFF consumes the state and calls /Authorize) -> 303 back with status=connected
- connect: POST /v1/connect/sessions -> the sandbox's Connect shortcut (what the iframe does)
           -> POST .../complete (the BFF calls /Authorize) -> GET /v1/flows/{id}
- token:   POST /v1/authorize-tokens, as a page of the frontend: with the browser session
           (one for the run, from a Connect start) and the page's Origin, as session mode asks

Every request to the app under test is timed on its own (`steps`); the flow's latency is the
whole sequence, sandbox shortcut included.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, urlsplit

from bench.client import JSON_HEADERS, Pool, Response, json_body

USERNAME = "greatday_nomfa"  # 200 on live /Authorize, no MFA (app/sandbox/README.md)
PASSWORD = "Everyday"  # noqa: S105 - the sandbox's documented test password
INSTITUTION = "FlinksCapital"
# The BFF's default return URL; the OAuth redirect_uri is the matching BFF_PUBLIC_URL constant.
RETURN_URL = "http://127.0.0.1:8000/"
PAGE_ORIGIN = "http://127.0.0.1:8000"  # BFF_PUBLIC_URL: its own pages may mint tokens
START_PATH = f"/v1/oauth/start?institution={INSTITUTION}&return_url={quote(RETURN_URL, safe='')}"


class FlowFailed(Exception):
    def __init__(self, step: str, detail: str) -> None:
        super().__init__(f"{step}: {detail}")
        self.key = f"{step}: {detail}"


@dataclass(slots=True)
class Targets:
    app: Pool  # the BFF or the baseline
    sandbox: Pool
    page: Jar | None = None  # the token flow's browser session, made once per run


Flow = Callable[[Targets, list[float]], Awaitable[None]]


class Jar(dict[str, str]):
    """A flow's cookies, as a browser keeps them: every Set-Cookie replaces the one of its name
    (the BFF rotates its session id when a flow completes)."""

    def take(self, response: Response) -> Response:
        for cookie in response.cookies:
            name, _, value = cookie.partition("=")
            self[name] = value
        return response

    def header(self) -> tuple[str, str]:
        return "Cookie", "; ".join(f"{name}={value}" for name, value in self.items())


async def _timed(
    steps: list[float],
    pool: Pool,
    method: str,
    target: str,
    *,
    headers: tuple[tuple[str, str], ...] = (),
    body: bytes | None = None,
) -> Response:
    started = time.perf_counter()
    response = await pool.request(method, target, headers=headers, body=body)
    steps.append(time.perf_counter() - started)
    return response


def _expect(step: str, response: Response, status: int) -> None:
    if response.status != status:
        raise FlowFailed(step, f"HTTP {response.status}")


def _path_and_query(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def oauth(t: Targets, steps: list[float]) -> None:
    jar = Jar()
    started = jar.take(await _timed(steps, t.app, "GET", START_PATH))
    _expect("start", started, 303)
    bank = await t.sandbox.request(
        "POST",
        "/__sandbox/oauth/complete",
        headers=JSON_HEADERS,
        body=json_body(
            {"session": started.headers["location"], "username": USERNAME, "password": PASSWORD}
        ),
    )
    _expect("bank", bank, 200)
    callback = _path_and_query(bank.json()["location"])
    done = await _timed(steps, t.app, "GET", callback, headers=(jar.header(),))
    _expect("callback", done, 303)
    status = parse_qs(urlsplit(done.headers.get("location", "")).query).get("status")
    if status != ["connected"]:
        raise FlowFailed("callback", f"status={status}")


async def connect(t: Targets, steps: list[float]) -> None:
    jar = Jar()
    session = jar.take(
        await _timed(steps, t.app, "POST", "/v1/connect/sessions", headers=JSON_HEADERS, body=b"{}")
    )
    _expect("session", session, 201)
    started = session.json()
    flow_id = started["flow_id"]
    token = parse_qs(urlsplit(started["iframe_url"]).query)["authorizeToken"][0]
    iframe = await t.sandbox.request(
        "POST",
        "/__sandbox/connect/complete",
        headers=JSON_HEADERS,
        body=json_body({"authorize_token": token, "username": USERNAME, "password": PASSWORD}),
    )
    _expect("iframe", iframe, 200)
    login_id = iframe.json()["login_id"]
    done = await _timed(
        steps,
        t.app,
        "POST",
        f"/v1/connect/sessions/{flow_id}/complete",
        headers=(*JSON_HEADERS, jar.header()),
        body=json_body({"login_id": login_id, "institution": INSTITUTION}),
    )
    jar.take(done)
    _expect("complete", done, 200)
    if done.json().get("status") != "connected":
        raise FlowFailed("complete", f"status={done.json().get('status')}")
    status = await _timed(steps, t.app, "GET", f"/v1/flows/{flow_id}", headers=(jar.header(),))
    _expect("status", status, 200)
    if status.json().get("status") != "connected":
        raise FlowFailed("status", f"status={status.json().get('status')}")


async def _page_session(t: Targets) -> Jar:
    """A browser's session, as a page that started a Connect flow has one (not timed)."""
    if t.page is None:
        jar = Jar()
        started = jar.take(
            await t.app.request("POST", "/v1/connect/sessions", headers=JSON_HEADERS, body=b"{}")
        )
        _expect("page session", started, 201)
        t.page = jar
    return t.page


async def token(t: Targets, steps: list[float]) -> None:
    page = await _page_session(t)
    headers = (*JSON_HEADERS, ("Origin", PAGE_ORIGIN), *([page.header()] if page else []))
    minted = await _timed(steps, t.app, "POST", "/v1/authorize-tokens", headers=headers, body=b"{}")
    _expect("mint", minted, 201)


FLOWS: dict[str, Flow] = {"oauth": oauth, "connect": connect, "token": token}
# Requests a flow sends to the app under test, and upstream Flinks calls the app makes per flow
# in sequence (start: mint + oauth/authorize; callback: mint + Authorize; and so on).
APP_REQUESTS = {"oauth": 2, "connect": 3, "token": 1}
SEQUENTIAL_UPSTREAM_CALLS = {"oauth": 4, "connect": 3, "token": 1}
