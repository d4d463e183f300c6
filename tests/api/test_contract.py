"""The API contract (openapi.json): current, free of deployment values, one Problem schema whose
`code` lists every code the app answers, and each operation's errors as its route can answer."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts

import app as app_package
from app.api.openapi import OPERATION_ERRORS, contract, render
from app.api.problems import Problem
from app.api.security import require_json
from app.api.session import LOCAL_NAME, SECURE_NAME
from app.errors import error_classes
from app.main import create_app
from app.settings import DEV_RETURN_URLS
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "openapi.json"
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


def _app(**overrides: object) -> FastAPI:
    return create_app(make_settings(None, **overrides))


def _operations(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        operation["operationId"]: operation
        for methods in document["paths"].values()
        for operation in methods.values()
    }


def _codes(operation: dict[str, Any]) -> dict[int, set[str]]:
    """Each error status of an operation, with the codes of its examples."""
    return {
        int(status): set(response["content"]["application/problem+json"]["examples"])
        for status, response in operation["responses"].items()
        if int(status) >= 400
    }


def test_committed_openapi_json_is_current() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == render(contract(_app())), (
        "openapi.json is stale: run make openapi, and commit it"
    )


def test_the_contract_names_no_value_of_a_deployment() -> None:
    configured = {
        "BFF_RETURN_URLS": "https://shop.example/linked",
        "FLINKS_INSTITUTIONS": "RBC",
        "BFF_CORS_ORIGINS": "https://shop.example",
    }
    assert render(contract(_app(**configured))) == render(contract(_app()))
    text = COMMITTED.read_text(encoding="utf-8")
    for value in (*DEV_RETURN_URLS, "127.0.0.1", "localhost", "FlinksCapital"):
        assert value not in text
    live = _app(**configured).openapi()
    body = live["components"]["schemas"]["OAuthSessionIn"]["properties"]
    assert body["institution"]["enum"] == ["RBC"]
    assert body["return_url"]["anyOf"][0]["enum"] == ["https://shop.example/linked"]
    assert "BFF_RETURN_URLS" in body["return_url"]["description"]


def _all_app_modules() -> None:
    for module in pkgutil.walk_packages(app_package.__path__, "app."):
        if not module.name.endswith(".__main__"):  # a program, not a library
            importlib.import_module(module.name)


def _literal_codes() -> set[str]:
    """Codes written as literals where a problem is rendered: `problem_response(status, "x", ...)`
    or `Problem(code="x")` anywhere under app/ (the middleware's own answers)."""
    found: set[str] = set()
    for path in (ROOT / "app").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
                continue
            arguments = [*node.args[1:2]] if node.func.id == "problem_response" else []
            arguments += [k.value for k in node.keywords if k.arg == "code"]
            if node.func.id in ("problem_response", "Problem"):
                found |= {
                    a.value
                    for a in arguments
                    if isinstance(a, ast.Constant) and isinstance(a.value, str)
                }
    return found


def test_code_is_an_enum_of_every_code_the_app_answers() -> None:
    _all_app_modules()  # an AppError subclass anywhere under app/ counts
    enum = set(contract(_app())["components"]["schemas"]["Problem"]["properties"]["code"]["enum"])
    assert enum == set(error_classes())
    literals = _literal_codes()
    assert "origin_not_allowed" in literals  # the scan sees the middleware's answers
    assert literals <= enum
    for code in ("not_found", "method_not_allowed", "validation_error", "internal_error"):
        assert code in enum


def test_every_error_is_one_problem_schema_by_ref_with_a_real_example() -> None:
    document = contract(_app())
    schemas = document["components"]["schemas"]
    assert [name for name in schemas if "problem" in name.lower()] == ["Problem"]
    assert "HTTPValidationError" not in schemas
    classes = error_classes()
    for op_id, operation in _operations(document).items():
        for status, response in operation["responses"].items():
            if int(status) < 400:
                continue
            content = response["content"]["application/problem+json"]
            assert content["schema"] == PROBLEM_REF, (op_id, status)
            for code, example in content["examples"].items():
                body = Problem.model_validate(example["value"])
                error = classes[code]
                assert (body.status, body.code, body.title) == (error.status, code, error.title)
                assert body.status == int(status), (op_id, code)
                assert body.type.endswith("/" + code)


def _api_routes(fastapi_app: FastAPI) -> list[RouteContext]:
    return [
        route
        for route in iter_route_contexts(fastapi_app.routes)
        if isinstance(route.original_route, APIRoute) and route.include_in_schema
    ]


def _dependencies(route: RouteContext) -> set[str]:
    return {
        dependency.call.__qualname__
        for dependency in route.dependant.dependencies
        if dependency.call
    }


# The dependencies that establish who calls (app/api/identity.py, app/api/internal.py).
IDENTITY_DEPENDENCIES = {"caller", "flow_caller", "flow_starter", "token_caller", "service_caller"}


def test_each_operation_lists_what_its_route_can_answer() -> None:
    fastapi_app = _app()
    operations = _operations(contract(fastapi_app))
    routes = _api_routes(fastapi_app)
    assert {operations[r.unique_id]["operationId"] for r in routes} == set(OPERATION_ERRORS)
    for route in routes:
        codes = _codes(operations[route.unique_id])
        listed = {code for group in codes.values() for code in group}
        every = {"request_timeout", "headers_too_large", "internal_error", "overloaded"}
        assert every | {"store_unavailable"} <= listed, route.unique_id
        posts = "POST" in (route.methods or ())
        writes = posts or "DELETE" in (route.methods or ())
        # The CSRF check concerns state-changing requests; JSON only and the body cap, POSTs.
        assert ("origin_not_allowed" in listed) == writes, route.unique_id
        assert ("unsupported_media_type" in listed) == (
            require_json.__qualname__ in _dependencies(route)
        )
        assert ("payload_too_large" in listed) == posts, route.unique_id
        # A body read into a model: unreadable (400) or invalid (422); parameters: invalid.
        # Flinks' webhook reads its raw body (the signature covers the bytes): 400, never 422.
        dependant = route.dependant
        raw_body = route.unique_id == "webhooks-receive_flinks_webhook"
        assert ("bad_request" in listed) == (route.body_field is not None or raw_body)
        validated = route.body_field is not None or dependant.path_params or dependant.query_params
        assert ("validation_error" in listed) == bool(validated), route.unique_id
        limited = any(name.startswith("rate_limited.") for name in _dependencies(route))
        assert ("rate_limited" in listed) == limited, route.unique_id
        identified = bool(IDENTITY_DEPENDENCIES & _dependencies(route))
        assert ("unauthenticated" in listed) == identified, route.unique_id
        # Flinks' webhook is not_found while FLINKS_WEBHOOKS is off; no other route lists it.
        unlisted = {"method_not_allowed", "http_error", "store_misconfigured"}
        assert not (unlisted | ({"not_found"} if not raw_body else set())) & listed


@pytest.mark.parametrize(
    ("op_id", "flinks"),
    [
        ("tokens-mint_authorize_token", True),
        ("connect-start_connect", True),
        ("connect-complete_connect", True),
        ("oauth-start", True),
        ("oauth-create_session", True),
        ("flows-answer_mfa", True),
        # Flinks' failures go on the flow here, not into the answer.
        ("oauth-callback", False),
        ("flows-get_flow", False),
    ],
)
def test_operations_that_answer_flinks_failures_list_them(op_id: str, flinks: bool) -> None:
    codes = _codes(_operations(contract(_app()))[op_id])
    answered = {"flinks_rejected", "flinks_timeout"} <= codes.get(502, set()) | codes.get(
        504, set()
    )
    assert answered == flinks
    assert "flinks_unavailable" in codes[503]  # also: Flinks not configured


def test_security_schemes_describe_both_session_cookies_and_the_bearer_token() -> None:
    fastapi_app = _app()
    document = contract(fastapi_app)
    schemes = document["components"]["securitySchemes"]
    cookies = {scheme["name"] for scheme in schemes.values() if scheme.get("in") == "cookie"}
    assert cookies == {LOCAL_NAME, SECURE_NAME}
    assert schemes["bearer"]["type"] == "http"
    assert schemes["bearer"]["scheme"] == "bearer"
    assert "BFF_AUTH=jwt" in schemes["bearer"]["description"]
    assert schemes["service_token"]["scheme"] == "bearer"
    operations = _operations(document)
    session: list[dict[str, list[str]]] = [{"session": []}, {"session_https": []}]
    for route in _api_routes(fastapi_app):
        security = operations[route.unique_id]["security"]
        depends = _dependencies(route)
        if "service_caller" in depends:  # the host backend's routes: its token, nothing else
            assert security == [{"service_token": []}]
        elif route.unique_id == "webhooks-receive_flinks_webhook":  # Flinks' HMAC, no identity
            assert security == [{"flinks_signature": []}]
        elif {"caller", "flow_caller", "token_caller"} & depends and not route.unique_id.startswith(
            "links-list_links"
        ):  # the caller's identity
            assert security == [*session, {"bearer": []}]
        elif "flow_starter" in depends or route.unique_id.startswith("links-list_links"):
            # or none yet: a start issues the session; a list without one is empty
            assert security == [{}, *session, {"bearer": []}]
        else:  # the OAuth callback: bound to the browser that started the flow
            assert "current_session" in depends
            assert security == session


async def test_a_body_that_cannot_be_read_is_a_bad_request_problem(
    client: httpx.AsyncClient,
) -> None:
    """FastAPI's 400 for JSON that is not UTF-8 answers a code of the enum (it was `http_400`)."""
    response = await client.post(
        "/v1/connect/sessions",
        content=b'{"language": "\xff"}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "bad_request"
    assert response.json()["title"] == "Bad Request"
