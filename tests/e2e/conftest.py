"""Browser end-to-end fixtures: the real sandbox and the real BFF on sockets, Debian's Chromium.

One stack (sandbox + BFF) per Connect error mode of the sandbox: `redirect` (the default, what
`make run` starts: the error users get a loginId and fail at the BFF's live /Authorize) and
`event` (they fail inside the iframe, as Flinks Connect itself does), and per way the BFF tells
callers apart (`auth`: `session`, the default, or `jwt` with the sandbox's development token
issuer). Each starts on first use and lives for the session; every test gets it reset.

The demo page gets, besides the BFF's own headers, a second Content-Security-Policy: the
strictest one the page must live with (no inline code, nothing but itself and Flinks Connect).
A CSP violation or an uncaught script error in the page fails the test.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import httpx
import pytest
from redis import Redis
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.requests import Request as StarletteRequest
from starlette.responses import HTMLResponse
from starlette.routing import Route as StarletteRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.main import create_app
from app.sandbox.config import SandboxSettings
from tests.conftest import make_settings
from tests.integration.servers import bff_in_thread
from tests.ports import reserve_port
from tests.sandbox.server import SandboxHandle, running_sandbox, serve_quietly

if TYPE_CHECKING:
    from playwright.sync_api import (
        Browser,
        BrowserContext,
        ConsoleMessage,
        FloatRect,
        FrameLocator,
        Locator,
        Page,
        Request,
        WebError,
    )

SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "e2e"
DESKTOP = {"width": 1100, "height": 800}
PHONE = {"width": 375, "height": 812}
TIMEOUT_MS = 10_000

PASSWORD = "Everyday"
ANSWERS = {
    "What city were you born in?": "Montreal",
    "What is the best country on earth?": "Canada",
    "What shape do people like most?": "Triangle",
}

ErrorMode = Literal["redirect", "event"]
AuthMode = Literal["session", "jwt"]
DEV_AUDIENCE = "flinks-bff"
_CONFIG_PREFIXES = ("BFF_", "FLINKS_", "REDIS_URL", "SANDBOX_")


@contextlib.contextmanager
def _clean_environment() -> Iterator[None]:
    """Settings built from code only: a developer's own variables must not leak in."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith(_CONFIG_PREFIXES):
                patch.delenv(name)
        yield


class DemoPolicy:
    """Adds a Content-Security-Policy to the demo page (`/`). The browser enforces it on top
    of any policy the app sends itself."""

    def __init__(self, app: ASGIApp, policy: str) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/":
            await self.app(scope, receive, send)
            return

        async def send_with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append("Content-Security-Policy", self.policy)
            await send(message)

        await self.app(scope, receive, send_with_policy)


def content_security_policy(connect_origin: str, *, token_origin: str | None = None) -> str:
    """Scripts and styles from the page's own origin only (no inline code), frames from Flinks
    Connect only, and nobody may frame the page. Images may also be data: URLs: an
    ImageSelection challenge's pictures come as base64 PNGs. `token_origin`: in jwt mode the
    page also fetches its token from the development issuer there."""
    connect_src = "'self'" if token_origin is None else f"'self' {token_origin}"
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src {connect_src}; frame-src {connect_origin}; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    )


@dataclass(frozen=True)
class Stack:
    """A sandbox and a BFF pointed at it, sharing the test Redis."""

    base_url: str
    sandbox: SandboxHandle
    redis_url: str
    auth: AuthMode = "session"

    @property
    def demo_url(self) -> str:
        return f"{self.base_url}/"

    @property
    def connect_origin(self) -> str:
        return self.sandbox.base_url

    def reset(self, http: httpx.Client) -> None:
        """A fresh sandbox (tokens, sessions, question rotation) and an empty Redis."""
        assert http.post(f"{self.sandbox.base_url}/__sandbox/reset").status_code == 204
        with Redis.from_url(self.redis_url) as redis:
            redis.flushdb()

    def switches(self, http: httpx.Client, **values: object) -> None:
        """Set some of the sandbox's switches (app/sandbox/README.md); `reset` restores them."""
        response = http.patch(f"{self.sandbox.base_url}/__sandbox/switches", json=values)
        assert response.status_code == 200, response.text

    def authorize_calls(self, http: httpx.Client) -> list[dict[str, Any]]:
        return self.calls(http, "Authorize")

    def calls(self, http: httpx.Client, endpoint: str) -> list[dict[str, Any]]:
        """The requests the sandbox received for one Flinks endpoint (DeleteCard, ...)."""
        response = http.get(
            f"{self.sandbox.base_url}/__sandbox/calls", params={"endpoint": endpoint}
        )
        assert response.status_code == 200
        calls: list[dict[str, Any]] = response.json()
        return calls


class Stacks:
    """The stacks of the session, by error mode and auth mode, started on first use."""

    def __init__(self, redis_url: str, exits: contextlib.ExitStack) -> None:
        self._redis_url = redis_url
        self._exits = exits
        self._stacks: dict[tuple[ErrorMode, AuthMode], Stack] = {}

    def get(self, mode: ErrorMode = "redirect", auth: AuthMode = "session") -> Stack:
        if (mode, auth) not in self._stacks:
            self._stacks[mode, auth] = self._start(mode, auth)
        return self._stacks[mode, auth]

    def _start(self, mode: ErrorMode, auth: AuthMode) -> Stack:
        reservation = reserve_port()
        bff_url = reservation.url
        with _clean_environment():
            sandbox_settings = SandboxSettings(
                redirect_uris=[f"{bff_url}/v1/oauth/callback"], connect_error_users=mode
            )
        sandbox = self._exits.enter_context(running_sandbox(sandbox_settings))
        identity: dict[str, object] = {}
        if auth == "jwt":
            # The sandbox's development issuer stands in for the host's identity provider.
            issuer = f"{sandbox.base_url}/__sandbox/identity"
            identity = {
                "BFF_AUTH": "jwt",
                "BFF_JWT_JWKS_URL": f"{issuer}/jwks.json",
                "BFF_JWT_ISSUER": issuer,
                "BFF_JWT_AUDIENCE": DEV_AUDIENCE,
            }
        with _clean_environment():
            settings = make_settings(
                self._redis_url,
                FLINKS_API_URL=sandbox.base_url,
                FLINKS_CONNECT_URL=f"{sandbox.base_url}/v2/",
                FLINKS_CUSTOMER_ID=sandbox.customer_id,
                FLINKS_SECRET_KEY=sandbox.settings.secret_key,
                FLINKS_API_KEY=sandbox.settings.api_key,
                FLINKS_DEMO=True,
                BFF_PUBLIC_URL=bff_url,
                BFF_RETURN_URLS=f"{bff_url}/",
                BFF_CORS_ORIGINS=bff_url,
                **identity,
            )
        token_origin = sandbox.base_url if auth == "jwt" else None
        policy = content_security_policy(sandbox.base_url, token_origin=token_origin)
        app = DemoPolicy(create_app(settings), policy)
        self._exits.enter_context(bff_in_thread(app, reservation))
        return Stack(base_url=bff_url, sandbox=sandbox, redis_url=self._redis_url, auth=auth)


@pytest.fixture(scope="session")
def stacks(redis_url: str) -> Iterator[Stacks]:
    with contextlib.ExitStack() as exits:
        yield Stacks(redis_url, exits)


@pytest.fixture(scope="session")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


@pytest.fixture
def error_mode() -> ErrorMode:
    """The sandbox's Connect error mode; `redirect` is what `make run` starts. Override with
    pytest.mark.parametrize("error_mode", [...])."""
    return "redirect"


@pytest.fixture
def auth() -> AuthMode:
    """How the BFF tells callers apart; `session` is what `make run` starts. Override with
    pytest.mark.parametrize("auth", ["jwt"])."""
    return "session"


@pytest.fixture
def stack(stacks: Stacks, http: httpx.Client, error_mode: ErrorMode, auth: AuthMode) -> Stack:
    """The stack for this test's error mode and auth mode, reset."""
    stack = stacks.get(error_mode, auth)
    stack.reset(http)
    return stack


# -- the browser -------------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def _expect_timeout() -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)


class Demo:
    """A page for the demo, and what its browser context asked the BFF and what went wrong."""

    def __init__(self, page: Page, stack: Stack) -> None:
        self.page = page
        self.context = page.context
        self.stack = stack
        self.requests: list[Request] = []
        self.problems: list[str] = []
        context = page.context
        context.on("request", self._on_request)
        context.on("console", self._on_console)
        context.on("weberror", self._on_error)

    # -- plumbing ------------------------------------------------------------------------------

    def _ours(self, url: str) -> bool:
        return url == self.stack.base_url or url.startswith(self.stack.base_url + "/")

    def _on_request(self, request: Request) -> None:
        self.requests.append(request)

    def _on_console(self, message: ConsoleMessage) -> None:
        text = message.text
        if "Content Security Policy" in text and self._ours(message.location.get("url", "")):
            self.problems.append(f"CSP: {text}")

    def _on_error(self, error: WebError) -> None:
        page = error.page
        if page is not None and self._ours(page.url):
            self.problems.append(f"uncaught error: {error.error}")

    # -- the page --------------------------------------------------------------------------------

    def open(self, query: str = "") -> None:
        self.page.goto(self.stack.demo_url + query)

    @property
    def status(self) -> Locator:
        return self.page.locator("#status")

    @property
    def error(self) -> Locator:
        return self.page.locator("#error")

    def steps(self) -> list[str]:
        return self.page.locator("#steps li").all_inner_texts()

    def api_calls(self, method: str, path_pattern: str) -> list[Request]:
        """Requests this context sent to the BFF whose path matches `path_pattern` fully."""
        pattern = re.compile(path_pattern)
        return [
            r
            for r in self.requests
            if r.method == method
            and self._ours(r.url)
            and pattern.fullmatch(urlsplit(r.url).path) is not None
        ]

    def completes(self) -> list[Request]:
        return self.api_calls("POST", r"/v1/connect/sessions/[^/]+/complete")

    # -- Flinks Connect ------------------------------------------------------------------------

    def start_connect(self) -> FrameLocator:
        self.page.get_by_role("button", name="Link with Flinks Connect").click()
        frame = self.page.frame_locator("#connect-frame")
        frame.locator("#institution-FlinksCapital").wait_for()
        return frame

    @staticmethod
    def sign_in(frame: FrameLocator, username: str, password: str = PASSWORD) -> None:
        """Choose Flinks Capital, consent, and sign in, inside the Connect iframe."""
        frame.locator("#institution-FlinksCapital").click()
        frame.locator("#consent-accept").click()
        frame.locator("#username").fill(username)
        frame.locator("#password").fill(password)
        frame.locator("#submit-credentials").click()

    @staticmethod
    def answer_in_iframe(frame: FrameLocator) -> str:
        prompt = frame.locator("#mfa-prompt-0").inner_text()
        frame.locator("#mfa-answer-0").fill(ANSWERS[prompt])
        frame.locator("#submit-mfa").click()
        return prompt

    def screenshot(self, path: Path, *, clip_height: float | None = None) -> None:
        """The whole page, or its top `clip_height` pixels."""
        path.parent.mkdir(parents=True, exist_ok=True)
        if clip_height is None:
            self.page.screenshot(path=str(path), full_page=True)
            return
        width = self.page.viewport_size["width"] if self.page.viewport_size else DESKTOP["width"]
        clip: FloatRect = {"x": 0, "y": 0, "width": width, "height": clip_height}
        self.page.screenshot(path=str(path), full_page=True, clip=clip)


def _file_name(node_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", node_name).strip("-")


@pytest.fixture
def viewport() -> dict[str, int]:
    """Override (e.g. with pytest.mark.parametrize("viewport", [PHONE])) for other sizes."""
    return DESKTOP


@pytest.fixture
def bypass_csp() -> bool:
    """True only where a test must put something into the page that its CSP forbids."""
    return False


@pytest.fixture
def context(
    chromium: Browser, viewport: dict[str, int], bypass_csp: bool
) -> Iterator[BrowserContext]:
    phone = viewport["width"] < 600
    context = chromium.new_context(
        viewport={"width": viewport["width"], "height": viewport["height"]},
        is_mobile=phone,
        has_touch=phone,
        bypass_csp=bypass_csp,
    )
    context.set_default_timeout(TIMEOUT_MS)
    yield context
    context.close()


@pytest.fixture
def demo(request: pytest.FixtureRequest, context: BrowserContext, stack: Stack) -> Iterator[Demo]:
    """A fresh page of the demo (not opened yet). Its final state is saved as a screenshot
    under build/e2e/, and it must end with no CSP violation and no uncaught script error."""
    demo = Demo(context.new_page(), stack)
    yield demo
    demo.screenshot(SCREENSHOTS / f"{_file_name(request.node.name)}.png")
    assert demo.problems == [], "\n".join(demo.problems)


# -- another origin ----------------------------------------------------------------------------

# A page on a third origin, to be put in a frame inside the demo page (an ad, a widget, a
# compromised script's frame); it posts forged Connect events to its parent.
INTRUDER_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>intruder</title>
</head><body><p>Another origin</p><script>
window.fire = (loginId) => {
  const forged = [
    {step: "REDIRECT", loginId: loginId, institution: "FlinksCapital", requestId: "forged"},
    JSON.stringify({step: "REDIRECT", loginId: loginId, institution: "FlinksCapital"}),
    {step: "INVALID_LOGIN", flinksCode: "INVALID_LOGIN", institution: "FlinksCapital"},
    {step: "COMPONENT_DENY_CONSENT", institution: "FlinksCapital"},
    {step: "MAXIMUM_RETRY_REACHED", institution: "FlinksCapital"},
  ];
  for (const message of forged) window.parent.postMessage(message, "*");
  return forged.length;
};
</script></body></html>"""


@pytest.fixture(scope="session")
def other_origin_url() -> Iterator[str]:
    """A tiny server on its own port: 127.0.0.1 on another port is another origin."""

    async def intruder(request: StarletteRequest) -> HTMLResponse:
        return HTMLResponse(INTRUDER_PAGE)

    with serve_quietly(Starlette(routes=[StarletteRoute("/intruder", intruder)])) as served:
        yield served.url
