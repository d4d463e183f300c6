"""RFC 9457 application/problem+json for every error the app can produce."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import (
    AppError,
    BadRequest,
    HttpError,
    MethodNotAllowed,
    NotFound,
    UnsupportedMediaType,
    ValidationFailed,
    error_classes,
)
from app.observability import request_id_var

log = logging.getLogger("app.errors")

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_BASE = "https://flinks-bff.dev/problems/"


def _code_enum(schema: dict[str, Any]) -> None:
    # Read when the schema is built, so it lists every AppError subclass defined by then.
    schema["enum"] = sorted(error_classes())


def _absent_not_null(schema: dict[str, Any]) -> None:
    # problem_response leaves None out (exclude_none): an optional field is absent, never null.
    required = set(schema.get("required", ()))
    for name, field in schema["properties"].items():
        if name in required:
            continue
        field.pop("default", None)
        options = field.pop("anyOf", None)
        if options is not None:
            kept = [option for option in options if option.get("type") != "null"]
            field.update(kept[0] if len(kept) == 1 else {"anyOf": kept})


class FieldError(BaseModel):
    """One reason a request is not valid: where (`loc`) and what, never the value sent."""

    loc: list[str] = Field(description='Where, e.g. `["body", "return_url"]`.')
    msg: str
    type: str = Field(description="Pydantic's error type, e.g. `string_too_long`.")


class Problem(BaseModel):
    """RFC 9457 problem details, plus a stable `code` and the request id."""

    model_config = ConfigDict(json_schema_extra=_absent_not_null)

    type: str = Field(description="`https://flinks-bff.dev/problems/` followed by the code.")
    title: str = Field(description="The same for every problem of a code; for people.")
    status: int = Field(description="The HTTP status.")
    code: str = Field(
        description="Stable machine-readable error code: branch on this.",
        json_schema_extra=_code_enum,
    )
    detail: str | None = Field(None, description="This occurrence, in words; for people.")
    request_id: str | None = Field(None, description="Quote it when reporting a problem.")
    errors: list[FieldError] | None = Field(
        None, description="For validation_error: where and what, never the input value."
    )
    flinks_code: str | None = Field(
        None, description="For flinks_rejected: the error code Flinks answered, when it gave one."
    )


def problem_response(
    status: int,
    code: str,
    title: str,
    *,
    detail: str | None = None,
    headers: Mapping[str, str] | None = None,
    errors: list[dict[str, Any]] | None = None,
    flinks_code: str | None = None,
) -> JSONResponse:
    problem = Problem(
        type=PROBLEM_TYPE_BASE + code,
        title=title,
        status=status,
        code=code,
        detail=detail,
        request_id=request_id_var.get(),
        errors=errors,
        flinks_code=flinks_code,
    )
    response_headers = {"Cache-Control": "no-store", **(headers or {})}
    return JSONResponse(
        problem.model_dump(exclude_none=True),
        status_code=status,
        headers=response_headers,
        media_type=PROBLEM_JSON,
    )


def _app_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)  # noqa: S101 - registered for AppError only
    return problem_response(
        exc.status,
        exc.code,
        exc.title,
        detail=exc.detail,
        headers=exc.headers,
        flinks_code=exc.flinks_code,
    )


def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)  # noqa: S101
    # loc, msg and type only: FastAPI's default also echoes the input, which may be a secret.
    errors = [
        {
            "loc": [str(part) for part in error.get("loc", ())],
            "msg": error.get("msg", ""),
            "type": error.get("type", ""),
        }
        for error in exc.errors()
    ]
    return problem_response(
        422,
        ValidationFailed.code,
        ValidationFailed.title,
        errors=errors,
    )


_HTTP_ERRORS: dict[int, type[AppError]] = {
    error.status: error for error in (BadRequest, NotFound, MethodNotAllowed, UnsupportedMediaType)
}


def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101
    error = _HTTP_ERRORS.get(exc.status_code)
    if error is None:
        code, title = HttpError.code, HTTPStatus(exc.status_code).phrase
    else:
        code, title = error.code, error.title
    headers = dict(exc.headers or {})
    if exc.status_code == MethodNotAllowed.status:
        headers["Allow"] = _allowed_methods(request)
    return problem_response(exc.status_code, code, title, headers=headers)


def _allowed_methods(request: Request) -> str:
    """Every method the path takes: Starlette names only those of the first route that matched
    it, and a path such as /v1/links/{id} has a route per method (GET, DELETE)."""
    routes = request.app.router.routes
    return ", ".join(
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    )


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def add_exception_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)


class UnhandledErrorMiddleware:
    """Turns any exception that escapes the app into a 500 problem, logged without its message.

    Starlette's own handler would answer too, but it re-raises afterwards, which makes uvicorn
    print the exception text; a message can quote a value we must not log.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def track(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, track)
        except Exception:
            log.exception("http.unhandled_error")
            if started:
                raise
            response = problem_response(
                AppError.status,
                AppError.code,
                AppError.title,
                detail="Something went wrong on our side. Quote the request id if you report it.",
            )
            await response(scope, receive, send)
