"""The OpenAPI document's shape: explicit operation ids, and only the API in it."""

from __future__ import annotations

from fastapi import FastAPI

from app.main import create_app
from tests.conftest import make_settings


def _document() -> dict[str, object]:
    app: FastAPI = create_app(make_settings("redis://127.0.0.1:6379/0"))
    document: dict[str, object] = app.openapi()
    return document


def test_every_operation_has_a_short_explicit_id() -> None:
    paths = _document()["paths"]
    assert isinstance(paths, dict)
    ids = {
        (method.upper(), path): operation["operationId"]
        for path, operations in paths.items()
        for method, operation in operations.items()
    }
    assert ids == {
        ("POST", "/v1/authorize-tokens"): "tokens-mint_authorize_token",
        ("POST", "/v1/connect/sessions"): "connect-start_connect",
        ("POST", "/v1/connect/sessions/{flow_id}/complete"): "connect-complete_connect",
        ("GET", "/v1/oauth/start"): "oauth-start",
        ("POST", "/v1/oauth/sessions"): "oauth-create_session",
        ("GET", "/v1/oauth/callback"): "oauth-callback",
        ("GET", "/v1/flows/{flow_id}"): "flows-get_flow",
        ("POST", "/v1/flows/{flow_id}/mfa"): "flows-answer_mfa",
        ("POST", "/v1/flows/{flow_id}/handoff"): "flows-redeem_handoff",
        ("GET", "/v1/links"): "links-list_links",
        ("GET", "/v1/links/{link_id}"): "links-get_link",
        ("DELETE", "/v1/links/{link_id}"): "links-delete_link",
        ("GET", "/v1/links/{link_id}/accounts"): "links-get_accounts",
        ("GET", "/v1/links/{link_id}/transactions"): "links-get_transactions",
        ("GET", "/internal/v1/links/{link_id}"): "internal-get_host_link",
        ("GET", "/internal/v1/owners/{owner}/links"): "internal-get_owner_links",
        ("POST", "/v1/webhooks/flinks"): "webhooks-receive_flinks_webhook",
    }


def test_probes_and_metrics_are_not_api_operations() -> None:
    paths = _document()["paths"]
    assert isinstance(paths, dict)
    assert not {"/livez", "/readyz", "/metrics"} & set(paths)
