"""Whether the BFF or the sandbox routes a GET of a path, asked of the apps themselves: a probe or
a healthcheck in a deployment file must name a path one of them serves."""

from __future__ import annotations

from functools import cache

from starlette.routing import Match
from starlette.types import ASGIApp, Scope

from app.main import create_app
from app.sandbox.app import create_sandbox_app
from app.sandbox.config import SandboxSettings
from tests.conftest import make_settings


def _routes_get(app: ASGIApp, path: str) -> bool:
    scope: Scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "headers": []}
    routes = getattr(app, "routes", [])
    return any(route.matches(scope)[0] is Match.FULL for route in routes)


@cache
def _bff() -> ASGIApp:
    return create_app(make_settings(None))  # development: the demo page is there too


@cache
def _sandbox() -> ASGIApp:
    return create_sandbox_app(SandboxSettings())


def bff_serves(path: str) -> bool:
    return _routes_get(_bff(), path)


def sandbox_serves(path: str) -> bool:
    return _routes_get(_sandbox(), path)
