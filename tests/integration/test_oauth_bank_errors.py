"""Any `error` the bank sends beats a loginId: the flow fails and /Authorize is never called."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest

from tests.integration.conftest import Sandbox
from tests.integration.oauth_steps import linked_callback, returned


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        ("&error=access_denied", "oauth_access_denied"),
        ("&error=" + "x" * 65, "oauth_error"),
        ("&error=", "oauth_error"),
        ("&error", "oauth_error"),
        ("&error=access_denied&error=", "oauth_error"),
        ("&error=&error=access_denied", "oauth_error"),
        ("&error=" + quote("access_denied\n"), "oauth_error"),
    ],
)
async def test_an_error_in_any_form_fails_the_flow_even_with_a_login_id(
    client: httpx.AsyncClient, sandbox: Sandbox, extra: str, code: str
) -> None:
    callback = await linked_callback(client, sandbox.http, "greatday_nomfa")
    assert callback.login_id is not None
    query = returned(await client.get(callback.path_and_query + extra))
    assert query["status"] == ["failed"]
    assert query["error"] == [code]
    assert await sandbox.authorize_calls() == []
    flow = (await client.get(f"/v1/flows/{query['flow_id'][0]}")).json()
    assert flow["status"] == "failed"


async def test_two_login_ids_are_not_a_login_id(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    callback = await linked_callback(client, sandbox.http, "greatday_nomfa")
    assert callback.login_id is not None
    other = "0b9e4a55-6b6e-4d1c-9a3e-6f4a1f8e2d11"
    query = returned(await client.get(f"{callback.path_and_query}&loginId={other}"))
    assert query["status"] == ["failed"]
    assert await sandbox.authorize_calls() == []
