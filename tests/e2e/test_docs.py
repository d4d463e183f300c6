"""/docs renders in a real browser with every request to another origin refused (no CDN)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.e2e.conftest import SCREENSHOTS, Stack

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, ConsoleMessage, Route

pytestmark = pytest.mark.e2e


def test_docs_render_with_the_network_off(context: BrowserContext, stack: Stack) -> None:
    from playwright.sync_api import expect

    page = context.new_page()
    elsewhere: list[str] = []
    problems: list[str] = []

    def only_this_server(route: Route) -> None:
        if route.request.url.startswith(stack.base_url):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(message.text)

    page.route("**/*", only_this_server)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", console)
    page.goto(f"{stack.base_url}/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("flinks-bff")
    expect(page.locator(".opblock").first).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "docs-offline.png"), full_page=False)
    assert elsewhere == []
    assert problems == []
