"""Browser fixtures: Debian's Chromium driven by Playwright, a parent page on another origin."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from tests.sandbox.conftest import clean_settings
from tests.sandbox.server import SandboxHandle, running_sandbox, serve_quietly
from tests.waiting import wait_until

if TYPE_CHECKING:
    from playwright.sync_api import Browser, FrameLocator, Page


# The parent page embeds the Connect iframe and forwards its messages to Python, checking the
# origin as an integrator must. recordEvent is bound by Playwright and survives navigations.
EMBED_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>parent</title></head>
<body><h1 id="parent">Integrator page</h1>
<iframe id="flinks" width="420" height="640"></iframe>
<script>
const query = new URLSearchParams(location.search);
const sandboxOrigin = query.get("origin");
window.addEventListener("message", (event) => {
  if (event.origin !== sandboxOrigin) return;
  window.recordEvent(event.data);
});
document.getElementById("flinks").src = query.get("src");
</script></body></html>"""
LANDING_PAGE = '<!doctype html><html><body><p id="landed">landed</p></body></html>'


def _parent_app() -> Starlette:
    async def embed(request: Request) -> HTMLResponse:
        return HTMLResponse(EMBED_PAGE)

    async def landing(request: Request) -> HTMLResponse:
        return HTMLResponse(LANDING_PAGE)

    return Starlette(routes=[Route("/embed", embed), Route("/landing", landing)])


@pytest.fixture(scope="session")
def parent_url() -> Iterator[str]:
    # 127.0.0.1 on another port: a different origin, as the real iframe host is.
    with serve_quietly(_parent_app()) as served:
        yield served.url


@pytest.fixture(scope="session")
def landing_url(parent_url: str) -> str:
    return f"{parent_url}/landing"


@pytest.fixture(scope="session")
def _e2e_sandbox(landing_url: str) -> Iterator[SandboxHandle]:
    with running_sandbox(clean_settings(redirect_uris=[landing_url])) as sandbox:
        yield sandbox


@pytest.fixture
def sandbox(_e2e_sandbox: SandboxHandle, http: httpx.Client) -> SandboxHandle:
    assert http.post(f"{_e2e_sandbox.base_url}/__sandbox/reset").status_code == 204
    return _e2e_sandbox


@pytest.fixture
def page(chromium: Browser) -> Iterator[Page]:
    context = chromium.new_context()
    context.set_default_timeout(10_000)
    page = context.new_page()
    yield page
    context.close()


class ConnectHarness:
    """The Connect page inside the parent page, and the postMessage events it sent."""

    def __init__(
        self, page: Page, sandbox: SandboxHandle, parent_url: str, http: httpx.Client
    ) -> None:
        self.page = page
        self.http = http
        self.sandbox = sandbox
        self.parent_url = parent_url
        self.events: list[Any] = []
        page.expose_function("recordEvent", self._record)

    def _record(self, data: Any) -> None:
        self.events.append(data)

    def token(self) -> str:
        response = self.http.post(
            f"{self.sandbox.api_url}/GenerateAuthorizeToken",
            headers={"flinks-auth-key": self.sandbox.settings.secret_key},
        )
        token: str = response.json()["Token"]
        return token

    def connect_url(self, **params: str) -> str:
        return f"{self.sandbox.base_url}/v2/?{urlencode(params)}"

    def open(self, url: str) -> FrameLocator:
        query = urlencode({"src": url, "origin": self.sandbox.base_url})
        self.page.goto(f"{self.parent_url}/embed?{query}")
        return self.page.frame_locator("#flinks")

    def steps(self) -> list[str]:
        return [e["step"] for e in self.events if isinstance(e, dict) and "step" in e]

    def event(self, step: str) -> dict[str, Any]:
        self.wait_for(step)
        found: dict[str, Any] = next(e for e in self.events if e.get("step") == step)
        return found

    def wait_for(self, step: str, timeout: float = 10) -> None:
        self.wait_until(lambda: step in self.steps(), timeout, f"a {step} event")

    def wait_until(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        wait_until(
            check,
            what=what,
            timeout=timeout,
            detail=lambda: f"events seen: {self.steps()}",
            # Lets Playwright deliver the page's recordEvent calls.
            pause=lambda seconds: self.page.wait_for_timeout(seconds * 1000),
        )


@pytest.fixture
def harness(
    page: Page, sandbox: SandboxHandle, parent_url: str, http: httpx.Client
) -> ConnectHarness:
    return ConnectHarness(page, sandbox, parent_url, http)
