"""Flinks Connect: start a session (iframe URL) and complete it with the REDIRECT loginId."""

from __future__ import annotations

from fastapi import APIRouter, Depends, status

from app.api.deps import FlowsDep
from app.api.identity import FlowCallerDep, FlowStarterDep
from app.api.limits import rate_limited
from app.api.schemas import CompleteIn, ConnectSessionIn, ConnectSessionOut, FlowId, FlowOut
from app.api.security import require_json
from app.api.session import SessionRotationDep

router = APIRouter(prefix="/v1/connect", tags=["connect"])


@router.post(
    "/sessions",
    status_code=status.HTTP_201_CREATED,
    summary="Start a Connect flow: mint a token and build the iframe URL",
    dependencies=[Depends(require_json), rate_limited("start")],
)
async def start_connect(
    body: ConnectSessionIn, flows: FlowsDep, session: FlowStarterDep
) -> ConnectSessionOut:
    started = await flows.start_connect(
        session=session.owner,
        language=body.language,
        return_url=body.return_url,
        tag=body.tag,
        options=body.options.model_dump(exclude_none=True),
    )
    await session.keep()
    return ConnectSessionOut(
        flow_id=started.flow.flow_id,
        iframe_url=started.iframe_url,
        connect_origin=started.connect_origin,
        expires_at=started.flow.expires_at,
    )


@router.post(
    "/sessions/{flow_id}/complete",
    summary="Bind the loginId from Connect's REDIRECT event to the flow and authorize it",
    dependencies=[Depends(require_json)],
)
async def complete_connect(
    body: CompleteIn,
    flows: FlowsDep,
    session: FlowCallerDep,
    rotation: SessionRotationDep,
    flow_id: FlowId,
) -> FlowOut:
    read = await flows.complete_connect(
        session=session, flow_id=flow_id, login_id=body.login_id, institution=body.institution
    )
    if read.connected_now:
        await rotation.after(read.flow.status)
    return FlowOut.of(read.flow)
