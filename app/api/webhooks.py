"""POST /v1/webhooks/flinks: Flinks' webhooks in (app/flows/webhooks.py does the work).

Called by Flinks' servers, never by a browser: no CORS header is sent and a request that says it
comes from a page (Origin) is refused (app/api/security.py); cookies are never read. Off unless
FLINKS_WEBHOOKS is true (404 `not_found`). The raw body is read under FLINKS_WEBHOOK_MAX_BYTES
(413 above it; app/api/edge.py gives this path that cap instead of BFF_MAX_BODY_BYTES) before
anything parses it, because the signature covers the exact bytes. The answer is 200 as soon as
the delivery is stored: Flinks counts any other status as a failure and retries.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict
from starlette.requests import ClientDisconnect

from app.api.deps import FlinksInboxDep, SettingsDep
from app.errors import NotFound, PayloadTooLarge

PATH = "/v1/webhooks/flinks"


class WebhookAck(BaseModel):
    model_config = ConfigDict(frozen=True)

    received: bool = True


router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

REQUEST_BODY = {
    "required": True,
    "description": "Flinks' event, as Flinks sends it (`ResponseType`, `Login`, `Tag`, "
    "`RequestId`, and for GetAccountsDetail the accounts). Signed: Base64 of HMAC-SHA256 of "
    "these exact bytes under FLINKS_WEBHOOK_SECRET, in the header FLINKS_WEBHOOK_HEADER.",
    "content": {"application/json": {"schema": {"type": "object"}}},
}


@router.post(
    "/flinks",
    summary="Flinks' webhook deliveries (Flinks' servers only; signed)",
    openapi_extra={"requestBody": REQUEST_BODY},
    response_description="Stored (or a duplicate already stored): Flinks stops retrying.",
)
async def receive_flinks_webhook(
    request: Request, settings: SettingsDep, inbox: FlinksInboxDep
) -> WebhookAck:
    if not settings.flinks_webhooks:
        raise NotFound("Webhooks are not enabled (FLINKS_WEBHOOKS).")
    body = await _read_body(request, settings.flinks_webhook_max_bytes)
    await inbox.receive(body, request.headers.get(settings.flinks_webhook_header))
    return WebhookAck()


async def _read_body(request: Request, cap: int) -> bytes:
    """The raw body, at most `cap` bytes. The edge middleware cuts a longer one first (the
    client then hears its 413); counting here too keeps the route safe on its own."""
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > cap:
                raise PayloadTooLarge(f"The body may be at most {cap} bytes.")
            chunks.append(chunk)
    except ClientDisconnect:
        # Cut at the cap by app/api/edge.py (its 413 replaces this answer), or the client left.
        raise PayloadTooLarge(f"The body may be at most {cap} bytes.") from None
    return b"".join(chunks)
