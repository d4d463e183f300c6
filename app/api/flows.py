"""A flow's status, and the answers to its MFA challenges."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from app.api.deps import FlowsDep
from app.api.identity import CallerDep
from app.api.schemas import FlowId, FlowOut, HandoffIn, MfaIn
from app.api.security import require_json
from app.api.session import SessionRotationDep

router = APIRouter(prefix="/v1/flows", tags=["flows"])


@router.get("/{flow_id}", summary="The flow's status (only for the session that owns it)")
async def get_flow(
    flows: FlowsDep, session: CallerDep, rotation: SessionRotationDep, flow_id: FlowId
) -> FlowOut:
    read = await flows.status(session=session, flow_id=flow_id)
    await rotation.after(read.connected_now)
    return FlowOut.of(read.flow)


@router.post(
    "/{flow_id}/mfa",
    summary="Answer the flow's MFA challenges",
    dependencies=[Depends(require_json)],
)
async def answer_mfa(
    body: MfaIn,
    flows: FlowsDep,
    session: CallerDep,
    rotation: SessionRotationDep,
    flow_id: FlowId,
) -> FlowOut:
    read = await flows.answer_mfa(session=session, flow_id=flow_id, responses=body.responses)
    await rotation.after(read.connected_now)
    return FlowOut.of(read.flow)


@router.post(
    "/{flow_id}/handoff",
    summary="A native app redeems its handoff code with the PKCE verifier; answers the flow",
    dependencies=[Depends(require_json)],
)
async def redeem_handoff(
    body: HandoffIn,
    flows: FlowsDep,
    session: CallerDep,
    rotation: SessionRotationDep,
    flow_id: FlowId,
) -> FlowOut:
    read = await flows.redeem_handoff(
        session=session, flow_id=flow_id, code=body.handoff_code, verifier=body.code_verifier
    )
    await rotation.after(read.connected_now)
    return FlowOut.of(read.flow)
