"""The OpenAPI document: the API contract committed as `openapi.json`, and the live one.

- Errors: one `Problem` schema, by `$ref`, whose `code` lists every stable code. Each operation
  lists only the errors it can answer (`OPERATION_ERRORS`, the one table), each with an example.
- The contract names no value of a deployment: `return_url` and `institution` are "one of
  BFF_RETURN_URLS / FLINKS_INSTITUTIONS". The live `/openapi.json` (development only) lists this
  deployment's values as enums, so /docs offers them and schemathesis generates accepted ones.
- `make openapi` writes the contract (`python -m app.api.openapi openapi.json`); a test fails
  when the committed file is stale.
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Iterable
from http import HTTPStatus
from pathlib import Path
from typing import Any, Final

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from app.api.problems import PROBLEM_JSON, PROBLEM_TYPE_BASE, Problem
from app.api.session import LOCAL_NAME, SECURE_NAME
from app.errors import (
    AppError,
    BadRequest,
    Conflict,
    FlowExpired,
    FlowNotFound,
    HandoffInvalid,
    HeadersTooLarge,
    IdentityUnavailable,
    LinkNotFound,
    LoginOwnedElsewhere,
    NotFound,
    OriginNotAllowed,
    Overloaded,
    PayloadTooLarge,
    RateLimited,
    RequestTimeout,
    ReturnUrlNotAllowed,
    ShuttingDown,
    StateInvalid,
    StoreUnavailable,
    Unauthenticated,
    UnsupportedMediaType,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
    ValidationFailed,
    WebhookSignatureInvalid,
)
from app.settings import Settings, load_settings

Errors = tuple[type[AppError], ...]

# Named groups of errors, by where they come from.
# Any request: the HTTP server (app/http_server.py), the in-flight cap (app/api/edge.py), Redis
# (the session, the rate counters, the flow) and anything unexpected.
EVERY: Final[Errors] = (RequestTimeout, HeadersTooLarge, AppError, Overloaded, StoreUnavailable)
# A POST under /v1: the CSRF Origin check (security.py), JSON only and the body cap (edge.py).
POST: Final[Errors] = (OriginNotAllowed, UnsupportedMediaType, PayloadTooLarge)
# A JSON body read into a model: unreadable (not UTF-8), or not valid.
BODY: Final[Errors] = (BadRequest, ValidationFailed)
# Path or query parameters checked by their types.
PARAMS: Final[Errors] = (ValidationFailed,)
RATE_LIMITED: Final[Errors] = (RateLimited,)
RETURN_URL: Final[Errors] = (ReturnUrlNotAllowed,)
# A Flinks call whose failure is the answer (UpstreamUnavailable also: Flinks not configured).
FLINKS: Final[Errors] = (UpstreamRejected, UpstreamUnavailable, UpstreamTimeout)
# A caller's flow by id, moved on by this request (compare-and-set: Conflict when it lost).
OWN_FLOW: Final[Errors] = (FlowNotFound, FlowExpired, Conflict)
# Settling a flow with Flinks in the background (app/flows/runner.py): refused while stopping.
SETTLES: Final[Errors] = (ShuttingDown,)
# BFF_AUTH=jwt or header: a /v1 request without a believable identity (app/api/identity.py).
AUTH: Final[Errors] = (Unauthenticated, IdentityUnavailable)
# A loginId presented for a flow is another owner's.
OWNED: Final[Errors] = (LoginOwnedElsewhere,)
# A DELETE under /v1: the CSRF Origin check.
DELETE: Final[Errors] = (OriginNotAllowed,)
# One of the caller's links; its data comes from Flinks.
LINK: Final[Errors] = (*PARAMS, LinkNotFound)

# The table: every API operation, by operation id, and the errors it can answer.
OPERATION_ERRORS: Final[dict[str, Errors]] = {
    "tokens-mint_authorize_token": (*EVERY, *POST, *AUTH, *RATE_LIMITED, *FLINKS),
    # HandoffInvalid: a code_challenge that is not a well-formed S256 one (a native app's flow).
    "connect-start_connect": (
        *EVERY,
        *POST,
        *BODY,
        *AUTH,
        *RATE_LIMITED,
        *RETURN_URL,
        HandoffInvalid,
        *FLINKS,
    ),
    "connect-complete_connect": (*EVERY, *POST, *BODY, *AUTH, *OWN_FLOW, *OWNED, *FLINKS, *SETTLES),
    "oauth-start": (*EVERY, *PARAMS, *AUTH, *RATE_LIMITED, *RETURN_URL, *FLINKS),
    "oauth-create_session": (*EVERY, *POST, *BODY, *AUTH, *RATE_LIMITED, *RETURN_URL, *FLINKS),
    # Flinks' failures are recorded on the flow, not answered (the browser goes back with them);
    # Conflict: a concurrent request moved the flow on; UpstreamUnavailable: not configured.
    # Bound to the browser session in every mode: never 401.
    "oauth-callback": (*EVERY, StateInvalid, Conflict, *OWNED, UpstreamUnavailable),
    # A read may take over a flow whose holder died (it asks Flinks; failures leave it pending).
    "flows-get_flow": (
        *EVERY,
        *PARAMS,
        *AUTH,
        FlowNotFound,
        Conflict,
        UpstreamUnavailable,
        *SETTLES,
    ),
    "flows-answer_mfa": (*EVERY, *POST, *BODY, *AUTH, *OWN_FLOW, *FLINKS, *SETTLES),
    # Every refusal of the handoff itself is handoff_invalid (which part, not told).
    "flows-redeem_handoff": (
        *EVERY,
        *POST,
        *BODY,
        *AUTH,
        HandoffInvalid,
        *OWNED,
        Conflict,
        *FLINKS,
        *SETTLES,
    ),
    "links-list_links": (*EVERY, *AUTH),
    "links-get_link": (*EVERY, *AUTH, *LINK),
    # Conflict: being deleted by another request, or Flinks still processing the account.
    "links-delete_link": (*EVERY, *DELETE, *AUTH, *LINK, Conflict, *FLINKS),
    "links-get_accounts": (*EVERY, *AUTH, *LINK, *FLINKS),
    "links-get_transactions": (*EVERY, *AUTH, *LINK, *FLINKS),
    "internal-get_host_link": (*EVERY, Unauthenticated, *LINK),
    "internal-get_owner_links": (*EVERY, Unauthenticated, *PARAMS),
    # Flinks' servers: never JSON-checked by content type (the signature covers the raw bytes,
    # which are then read as JSON: 400 if they are not an object); an Origin is refused (403).
    # NotFound: webhooks are off (FLINKS_WEBHOOKS=false).
    "webhooks-receive_flinks_webhook": (
        *EVERY,
        NotFound,
        OriginNotAllowed,
        PayloadTooLarge,
        WebhookSignatureInvalid,
        BadRequest,
    ),
}
# The operations that answer a person's browser (Accept: text/html) a page instead of JSON.
HTML_ERRORS: Final[dict[str, Errors]] = {"oauth-callback": (StateInvalid, LoginOwnedElsewhere)}
# The operations that act on the caller's flows: they need the session cookie.
# Who may call what (app/api/identity.py): the caller's session cookie, or its bearer token in
# jwt mode; a flow start also works without either in session mode (it issues the session);
# the OAuth callback is always the session's; /internal the service token's.
Requirement = dict[str, list[str]]
SESSION: Final[list[Requirement]] = [{"session": []}, {"session_https": []}]
CALLER: Final[list[Requirement]] = [*SESSION, {"bearer": []}]
SECURITY: Final[dict[str, list[Requirement]]] = {
    "tokens-mint_authorize_token": CALLER,
    "connect-start_connect": [{}, *CALLER],
    "connect-complete_connect": CALLER,
    "oauth-start": [{}, *CALLER],
    "oauth-create_session": [{}, *CALLER],
    "oauth-callback": SESSION,
    "flows-get_flow": CALLER,
    "flows-answer_mfa": CALLER,
    "flows-redeem_handoff": CALLER,
    # Session mode without a session: an empty list, not a 401.
    "links-list_links": [{}, *CALLER],
    "links-get_link": CALLER,
    "links-delete_link": CALLER,
    "links-get_accounts": CALLER,
    "links-get_transactions": CALLER,
    "internal-get_host_link": [{"service_token": []}],
    "internal-get_owner_links": [{"service_token": []}],
    "webhooks-receive_flinks_webhook": [{"flinks_signature": []}],
}

# Allow-lists of a deployment: described in the contract, listed only in the live document.
DEPLOYMENT_LISTS: Final = {"return_url": "BFF_RETURN_URLS", "institution": "FLINKS_INSTITUTIONS"}
BODY_SCHEMAS: Final = ("ConnectSessionIn", "OAuthSessionIn")

DESCRIPTION: Final = (
    "Every error is `application/problem+json` (RFC 9457), the `Problem` schema: branch on its "
    "stable `code`. Each operation lists the errors it can answer, with an example of each.\n\n"
    "Who the caller is depends on BFF_AUTH. `session`: an HttpOnly cookie the BFF sets when a "
    "flow starts; send it back (`credentials: 'include'`) to reach your flows and links. "
    "`jwt`: `Authorization: Bearer <JWT>` on every /v1 request (401 `unauthenticated` "
    "without). `header`: an authenticating proxy names the user."
)
SECURITY_SCHEMES: Final = {
    "session": {
        "type": "apiKey",
        "in": "cookie",
        "name": LOCAL_NAME,
        "description": "The browser session over plain http (development): set by the routes "
        "that start a flow, rotated when a flow connects. HttpOnly: a browser sends it by itself.",
    },
    "session_https": {
        "type": "apiKey",
        "in": "cookie",
        "name": SECURE_NAME,
        "description": "The same session when BFF_PUBLIC_URL is https (Secure, `__Host-` prefix).",
    },
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "The caller's identity when BFF_AUTH=jwt (owner = `sub`). With "
        "BFF_AUTH=header an authenticating proxy's header stands for it instead.",
    },
    "service_token": {
        "type": "http",
        "scheme": "bearer",
        "description": "The host backend's service token (its SHA-256 digest is in "
        "BFF_SERVICE_TOKENS). /internal/v1 only; never from a browser.",
    },
    "flinks_signature": {
        "type": "apiKey",
        "in": "header",
        "name": "flinks-authenticity-key",
        "description": "Flinks' webhook signature: Base64 of HMAC-SHA256 of the raw body under "
        "FLINKS_WEBHOOK_SECRET. The header is FLINKS_WEBHOOK_HEADER (this default, or "
        "X-Flinks-Signature as a newer Flinks guide names it).",
    },
}
RETRY_AFTER: Final = {
    "Retry-After": {
        "description": "Seconds to wait before trying again, when the BFF knows.",
        "schema": {"type": "integer"},
    }
}
EXAMPLE_REQUEST_ID: Final = "4bf92f3577b34da6a3ce929d0e0e4736"


def operation_id(route: APIRoute) -> str:
    """`<tag>-<function>`, e.g. `connect-complete_connect`: short, stable names for generated
    clients (FastAPI's default glues the path and method onto the function name)."""
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


def _example(error: type[AppError], field_error: dict[str, Any] | None = None) -> dict[str, Any]:
    """The body of a real instance of `error`, as app/api/problems.py renders it."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + error.code,
        "title": error.title,
        "status": error.status,
        "code": error.code,
        "request_id": EXAMPLE_REQUEST_ID,
    }
    if error.default_detail is not None:
        body["detail"] = error.default_detail
    if field_error is not None:
        body["errors"] = [field_error]
    return Problem.model_validate(body).model_dump(mode="json", exclude_none=True)


def _field_error(operation: dict[str, Any]) -> dict[str, Any]:
    """One `errors` entry the operation really answers: a body that is not JSON, else its first
    parameter missing (query) or malformed (path)."""
    if "requestBody" in operation:
        return {"loc": ["body", "0"], "msg": "JSON decode error", "type": "json_invalid"}
    parameter = next(p for p in operation["parameters"] if p.get("required"))
    loc = [parameter["in"], parameter["name"]]
    pattern = parameter["schema"].get("pattern")
    if parameter["in"] == "path" and pattern:
        message = f"String should match pattern '{pattern}'"
        return {"loc": loc, "msg": message, "type": "string_pattern_mismatch"}
    return {"loc": loc, "msg": "Field required", "type": "missing"}


def error_responses(
    errors: Iterable[type[AppError]],
    *,
    html: Errors = (),
    field_error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """OpenAPI `responses` for `errors`: one per status, an example per code (`field_error` in
    validation_error's)."""
    by_status: dict[int, list[type[AppError]]] = {}
    for error in dict.fromkeys(errors):
        by_status.setdefault(error.status, []).append(error)
    responses: dict[str, Any] = {}
    for status, group in sorted(by_status.items()):
        codes = ", ".join(f"`{error.code}` ({error.title})" for error in group)
        content: dict[str, Any] = {
            PROBLEM_JSON: {
                "schema": {"$ref": "#/components/schemas/Problem"},
                "examples": {
                    error.code: {
                        "value": _example(error, field_error if error is ValidationFailed else None)
                    }
                    for error in group
                },
            }
        }
        if any(error in html for error in group):
            content["text/html"] = {
                "schema": {
                    "type": "string",
                    "description": "With Accept: text/html (a person's browser): a page instead.",
                }
            }
        response: dict[str, Any] = {
            "description": f"{HTTPStatus(status).phrase}: {codes}",
            "content": content,
        }
        if status in (429, 503):
            response["headers"] = RETRY_AFTER
        responses[str(status)] = response
    return responses


def _schemas() -> dict[str, Any]:
    """Problem and the models it uses, as components."""
    schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = schema.pop("$defs", {})
    schemas["Problem"] = schema
    return schemas


def contract(app: FastAPI) -> dict[str, Any]:
    """The document for any deployment (openapi.json): the routes, their errors, no settings."""
    document = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=DESCRIPTION,
        routes=app.routes,
    )
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    # FastAPI's own 422 model: this app answers a Problem instead (problems.py).
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas.update(_schemas())
    components["securitySchemes"] = SECURITY_SCHEMES
    unlisted = set(OPERATION_ERRORS)
    for path, methods in document.get("paths", {}).items():
        for method, operation in methods.items():
            op_id = operation["operationId"]
            if op_id not in OPERATION_ERRORS:
                raise LookupError(f"{method.upper()} {path} ({op_id}) is not in OPERATION_ERRORS")
            unlisted.discard(op_id)
            responses = operation["responses"]
            responses.pop("422", None)
            errors = OPERATION_ERRORS[op_id]
            responses.update(
                error_responses(
                    errors,
                    html=HTML_ERRORS.get(op_id, ()),
                    field_error=_field_error(operation) if ValidationFailed in errors else None,
                )
            )
            operation["security"] = copy.deepcopy(SECURITY[op_id])
            for parameter in operation.get("parameters", []):
                _describe_list(parameter, parameter["name"])
    if unlisted:
        raise LookupError(f"OPERATION_ERRORS names no operation of the app: {sorted(unlisted)}")
    for name in BODY_SCHEMAS:
        for field, schema in schemas[name]["properties"].items():
            _describe_list(schema, field)
    return document


def _describe_list(target: dict[str, Any], name: str) -> None:
    """A field checked against a deployment's list says which; its schema lists no value."""
    variable = DEPLOYMENT_LISTS.get(name)
    if variable is not None:
        target["description"] = f"Exactly one of {variable} (this deployment's list)."


def _restrict(schema: dict[str, Any], allowed: list[str]) -> None:
    for option in schema.get("anyOf", [schema]):
        if option.get("type") == "string":
            option.pop("pattern", None)
            option["enum"] = allowed


def live(document: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The contract with this deployment's allow-lists as enums (checked at run time anyway:
    400 return_url_not_allowed, 422 for an institution not listed)."""
    document = copy.deepcopy(document)
    enums = {
        "return_url": list(settings.bff_return_urls),
        "institution": list(settings.flinks_institutions),
    }
    schemas = document["components"]["schemas"]
    for name in BODY_SCHEMAS:
        properties = schemas[name]["properties"]
        for field, allowed in enums.items():
            if field in properties:
                _restrict(properties[field], allowed)
    for path in document["paths"].values():
        for operation in path.values():
            for parameter in operation.get("parameters", []):
                if parameter["name"] in enums:
                    _restrict(parameter["schema"], enums[parameter["name"]])
    return document


def install_openapi(app: FastAPI, settings: Settings) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = live(contract(app), settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def render(document: dict[str, Any]) -> str:
    """openapi.json as committed: sorted keys, two-space indent, a final newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def contract_text() -> str:
    """The contract of the app built with default settings (none of them shows in it)."""
    from app.main import create_app  # here: app.main imports this module

    return render(contract(create_app(load_settings(_env_file=None))))


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m app.api.openapi PATH", file=sys.stderr)  # noqa: T201
        return 2
    Path(argv[0]).write_text(contract_text(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
