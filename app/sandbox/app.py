"""The sandbox ASGI app: Flinks' own paths, the Connect page, the bank page, the control API."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from app.sandbox.authorize import Authorizer
from app.sandbox.banking import BankingApi
from app.sandbox.config import SandboxSettings
from app.sandbox.connect import Connect
from app.sandbox.control import Control
from app.sandbox.dev_identity import DevIdentity
from app.sandbox.middleware import SandboxMiddleware
from app.sandbox.oauth import OAuth
from app.sandbox.state import SandboxState
from app.sandbox.webhooks import Webhooks


def create_sandbox_app(settings: SandboxSettings | None = None) -> Starlette:
    """A new sandbox with its own in-memory state (``app.state.sandbox``)."""
    settings = settings or SandboxSettings()
    state = SandboxState(settings)
    webhooks = Webhooks(state)
    authorizer = Authorizer(state, webhooks)
    oauth = OAuth(state, authorizer)
    # The API routes come first: routing is linear and they carry the load in benchmarks.
    routes: list[BaseRoute] = [*BankingApi(state, authorizer, webhooks).routes()]
    routes += oauth.routes()
    routes += Connect(state, authorizer).routes()
    if settings.control_api:
        routes += Control(state, authorizer, oauth, webhooks).routes()
        routes += DevIdentity(settings).routes()

    async def not_found(request: Request, exc: Exception) -> Response:
        return JSONResponse(
            {"Message": "No HTTP resource was found that matches the request URI"}, 404
        )

    app = Starlette(
        routes=routes,
        middleware=[Middleware(SandboxMiddleware, state=state)],
        exception_handlers={404: not_found},
    )
    app.state.sandbox = state
    app.state.webhooks = webhooks
    return app
