"""The baseline served by FastAPI: `--app fastapi` of `python -m bench.baseline`.

The same client, the same Flinks calls and the same Redis round trips as the baseline (its
`Baseline` methods, called as they are), behind FastAPI routes declared the way FastAPI's own
tutorial declares them: typed query and path parameters, a pydantic body, a lifespan. No
security, logging, metrics or validation of ours. Its CPU per flow against the baseline's is
what the framework the card names costs on its own, the part of the BFF's ratio that no code of
ours can remove (bench/README.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Literal

from fastapi import FastAPI, Path, Query, Request, Response
from pydantic import BaseModel, Field

from bench.baseline import Baseline, Reply

FlowId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{16,64}$")]


class CompleteIn(BaseModel):
    login_id: str = Field(max_length=64)
    institution: str | None = Field(None, max_length=64)


def _response(reply: Reply) -> Response:
    response = Response(reply.body, status_code=reply.status)
    response.raw_headers.extend(reply.headers)
    return response


def fastapi_app(core: Baseline) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await core.open()
        yield
        await core.close()

    app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)

    @app.post("/v1/authorize-tokens", status_code=201)
    async def mint(request: Request) -> Response:
        return _response(await core.mint_for_page(request.scope))

    @app.get("/v1/oauth/start", status_code=303)
    async def oauth_start(
        request: Request,
        institution: Annotated[str, Query(pattern=r"^[A-Za-z0-9_-]{1,64}$")],
        return_url: Annotated[str | None, Query(max_length=2048)] = None,
        language: Annotated[Literal["en", "fr"], Query()] = "en",
    ) -> Response:
        return _response(await core.oauth_start(request.scope))

    @app.get("/v1/oauth/callback", status_code=303)
    async def oauth_callback(
        request: Request,
        state: Annotated[str, Query(max_length=128)],
        login_id: Annotated[str, Query(alias="loginId", max_length=64)],
    ) -> Response:
        return _response(await core.oauth_callback(request.scope))

    @app.post("/v1/connect/sessions", status_code=201)
    async def connect_session() -> Response:
        return _response(await core.connect_session())

    @app.post("/v1/connect/sessions/{flow_id}/complete")
    async def connect_complete(flow_id: FlowId, body: CompleteIn, request: Request) -> Response:
        return _response(await core.connect_complete(request.scope, flow_id, body.login_id))

    @app.get("/v1/flows/{flow_id}")
    async def flow_status(flow_id: FlowId, request: Request) -> Response:
        return _response(await core.flow_status(request.scope, flow_id))

    @app.get("/readyz")
    async def ready() -> Response:
        return _response(await core.ready())

    return app
