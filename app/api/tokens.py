"""POST /v1/authorize-tokens: one single-use Flinks authorize token."""

from __future__ import annotations

from fastapi import APIRouter, Depends, status

from app.api.deps import FlowsDep
from app.api.identity import TokenCallerDep
from app.api.limits import rate_limited
from app.api.schemas import AuthorizeTokenOut
from app.api.security import require_json

router = APIRouter(prefix="/v1", tags=["tokens"])


@router.post(
    "/authorize-tokens",
    status_code=status.HTTP_201_CREATED,
    summary="Mint one Flinks authorize token (single use, 30 minutes)",
    dependencies=[Depends(require_json), rate_limited("mint")],
)
async def mint_authorize_token(flows: FlowsDep, _caller: TokenCallerDep) -> AuthorizeTokenOut:
    minted = await flows.mint_token()
    return AuthorizeTokenOut(
        authorize_token=minted.token.get_secret_value(), expires_at=minted.expires_at
    )
