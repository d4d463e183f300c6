"""The host backend's way to a link's loginId: `/internal/v1`, for service tokens only.

`Authorization: Bearer <token>` is hashed (SHA-256) and compared, in constant time, with every
digest in BFF_SERVICE_TOKENS: the configuration never holds a usable token. Cookies are never
read and no CORS header is ever sent here (app/api/security.py), so a browser cannot use these
routes even with a leaked token in a page. Each answer is audit-logged without the loginId.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request

from app.api.deps import FlowsDep, SettingsDep
from app.api.link_schemas import HostLinkOut, HostLinksOut, LinkId
from app.errors import Unauthenticated
from app.identity.callers import bearer_token

log = logging.getLogger("app.audit")

# An owner as the modes name one: a session owner, a JWT `sub`, a proxy's user.
Owner = Annotated[str, Path(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f\x7f]+$")]


async def service_caller(request: Request, settings: SettingsDep) -> str:
    """The matching digest's first 12 hex digits (which token, for the audit log), or 401. A
    request a browser sent (it says where from: Origin, Fetch Metadata) is refused whatever it
    carries."""
    from_browser = "origin" in request.headers or "sec-fetch-site" in request.headers
    token = bearer_token(request.headers.get("authorization"))
    presented = hashlib.sha256((token or "").encode()).hexdigest()
    found = None
    for digest in settings.bff_service_tokens:  # every digest compared: no early exit
        if hmac.compare_digest(presented, digest) and token is not None:
            found = digest
    if found is None or from_browser:
        log.warning("internal.refused", extra={"from_browser": from_browser})
        raise Unauthenticated(
            "A service token is required.",
            headers={"WWW-Authenticate": 'Bearer realm="flinks-bff-internal"'},
        )
    return found[:12]


ServiceDep = Annotated[str, Depends(service_caller)]

router = APIRouter(prefix="/internal/v1", tags=["internal"])


@router.get("/links/{link_id}", summary="A link with its loginId (host backend only)")
async def get_host_link(flows: FlowsDep, service: ServiceDep, link_id: LinkId) -> HostLinkOut:
    link = await flows.links.host_link(link_id)
    log.info("internal.link_read", extra={"service": service, "link_id": link.link_id})
    return HostLinkOut.of(link)


@router.get("/owners/{owner}/links", summary="An owner's links with their loginIds")
async def get_owner_links(flows: FlowsDep, service: ServiceDep, owner: Owner) -> HostLinksOut:
    links = await flows.links.host_links(owner)
    owner_hash = hashlib.sha256(owner.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    log.info(
        "internal.owner_links_read",
        extra={"service": service, "owner_hash": owner_hash, "count": len(links)},
    )
    return HostLinksOut(links=[HostLinkOut.of(link) for link in links])
