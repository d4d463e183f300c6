"""RFC 9457 application/problem+json for every error the app can produce."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import AppError, ValidationFailed
from app.observability import request_id_var

log = logging.getLogger("app.errors")

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_BASE = "https://flinks-bff.dev/problems/"


class Problem(BaseModel):
    """RFC 9457 problem details, plus a stable `code` and the request id."""

    type: str
    title: str
    status: int
    code: str = Field(description="Stable machine-readable error code.")
    detail: str | None = None
    request_id: str | None = None
    errors: list[dict[str, Any]] | None = Field(
        None, description="For validation_error: where and what, never the input value."
    )
    flinks_code: str | None = None


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


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 415: "unsupported_media_type"}


def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101
    code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    title = HTTPStatus(exc.status_code).phrase
    return problem_response(exc.status_code, code, title, headers=exc.headers)


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
                500,
                "internal_error",
                "Internal error",
                detail="Something went wrong on our side. Quote the request id if you report it.",
            )
            await response(scope, receive, send)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for errors, documented as application/problem+json."""
    schema = Problem.model_json_schema()
    return {
        status: {
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_JSON: {"schema": schema}},
        }
        for status in statuses
    }


# What any v1 route may answer besides its success.
API_PROBLEMS = problem_responses(400, 403, 404, 409, 410, 413, 415, 422, 429, 500, 502, 503, 504)
