"""The caller's links: list, read, delete, and each link's accounts and transactions."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status
from starlette.responses import JSONResponse

from app.api.deps import FlowsDep
from app.api.identity import CallerDep
from app.api.link_schemas import (
    AccountId,
    AccountsOut,
    DataPendingOut,
    LinkId,
    LinkOut,
    LinksOut,
    TransactionOut,
    TransactionsOut,
)
from app.flows import DataPending

router = APIRouter(prefix="/v1/links", tags=["links"])

PENDING: dict[int | str, dict[str, Any]] = {
    202: {
        "model": DataPendingOut,
        "description": "Flinks is preparing the data: ask again after `Retry-After` seconds.",
        "headers": {
            "Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}
        },
    }
}


def _pending(pending: DataPending) -> JSONResponse:
    return JSONResponse(
        DataPendingOut().model_dump(),
        status_code=status.HTTP_202_ACCEPTED,
        headers={"Retry-After": str(pending.retry_after)},
    )


@router.get("", summary="The caller's linked bank logins")
async def list_links(flows: FlowsDep, owner: CallerDep) -> LinksOut:
    links = await flows.links.owned(owner) if owner is not None else []
    return LinksOut(links=[LinkOut.of(link) for link in links])


@router.get("/{link_id}", summary="One of the caller's links")
async def get_link(flows: FlowsDep, owner: CallerDep, link_id: LinkId) -> LinkOut:
    return LinkOut.of(await flows.links.get(owner, link_id))


@router.delete(
    "/{link_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Unlink: Flinks forgets the login (DeleteCard, once); repeating it is harmless",
)
async def delete_link(flows: FlowsDep, owner: CallerDep, link_id: LinkId) -> Response:
    await flows.links.delete(owner, link_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{link_id}/accounts",
    response_model=AccountsOut,
    responses=PENDING,
    summary="The link's accounts and balances (202 while Flinks prepares them)",
)
async def get_accounts(
    flows: FlowsDep, owner: CallerDep, link_id: LinkId
) -> AccountsOut | JSONResponse:
    data = await flows.links.accounts(owner, link_id)
    if isinstance(data, DataPending):
        return _pending(data)
    return AccountsOut.of(data)


@router.get(
    "/{link_id}/transactions",
    response_model=TransactionsOut,
    responses=PENDING,
    summary="The link's transactions, newest first, a page at a time (at most 90 days)",
)
async def get_transactions(
    flows: FlowsDep,
    owner: CallerDep,
    link_id: LinkId,
    account_id: Annotated[AccountId | None, Query()] = None,
    days: Annotated[int, Query(ge=1, le=90)] = 90,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> TransactionsOut | JSONResponse:
    page = await flows.links.transactions(
        owner, link_id, account_id=account_id, days=days, cursor=cursor, limit=limit
    )
    if isinstance(page, DataPending):
        return _pending(page)
    return TransactionsOut(
        transactions=[TransactionOut.of(t) for t in page.transactions],
        next_cursor=page.next_cursor,
    )
