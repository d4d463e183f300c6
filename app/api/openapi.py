"""The OpenAPI document, with this deployment's allow-lists written into it.

`return_url` is checked against BFF_RETURN_URLS at run time (400 return_url_not_allowed) and
`institution` against FLINKS_INSTITUTIONS; the document lists the same values as enums, so
clients and generated SDKs see what is accepted.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from app.settings import Settings

BODY_SCHEMAS = ("ConnectSessionIn", "OAuthSessionIn")


def operation_id(route: APIRoute) -> str:
    """`<tag>-<function>`, e.g. `connect-complete_connect`: short, stable names for generated
    clients (FastAPI's default glues the path and method onto the function name)."""
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


def _restrict(schema: dict[str, Any], allowed: list[str]) -> None:
    for option in schema.get("anyOf", [schema]):
        if option.get("type") == "string":
            option.pop("pattern", None)
            option["enum"] = allowed


def install_openapi(app: FastAPI, settings: Settings) -> None:
    enums = {
        "return_url": list(settings.bff_return_urls),
        "institution": list(settings.flinks_institutions),
    }

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                routes=app.routes,
            )
            components = document.get("components", {}).get("schemas", {})
            for name in BODY_SCHEMAS:
                properties = components.get(name, {}).get("properties", {})
                for field, allowed in enums.items():
                    if field in properties:
                        _restrict(properties[field], allowed)
            for path in document.get("paths", {}).values():
                for operation in path.values():
                    for parameter in operation.get("parameters", []):
                        if parameter.get("name") in enums:
                            _restrict(parameter["schema"], enums[parameter["name"]])
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
