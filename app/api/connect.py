"""Flinks Connect: start a session (iframe URL) and complete it with the REDIRECT loginId."""

from __future__ import annotations

from fastapi import APIRouter, Depends, status

from app.api.deps import FlowsDep
from app.api.hosted import HostedDep
from app.api.identity import FlowCallerDep, FlowStarterDep
from app.api.limits import rate_limited
from app.api.schemas import CompleteIn, ConnectSessionIn, ConnectSessionOut, FlowId, FlowOut
from app.api.security import require_json
from app.api.session import SessionRotationDep
from app.flows import checked_challenge

router = APIRouter(prefix="/v1/connect", tags=["connect"])


@router.post(
    "/sessions",
    status_code=status.HTTP_201_CREATED,
    summary="Start a Connect flow: mint a token and build the iframe URL",
    dependencies=[Depends(require_json), rate_limited("start")],
)
async def start_connect(
    body: ConnectSessionIn, flows: FlowsDep, hosted: HostedDep, session: FlowStarterDep
) -> ConnectSessionOut:
    challenge = checked_challenge(body.code_challenge, body.code_challenge_method)
    options = body.options.model_dump(exclude_none=True)
    hosted_url: str | None = None
    if challenge is not None:  # a native app's: Connect runs in the hosted page (api/hosted.py)
        native = await hosted.start(
            session=session.owner,
            language=body.language,
            return_url=body.return_url,
            tag=body.tag,
            options=options,
            code_challenge=challenge,
        )
        started, hosted_url = native.session, native.hosted_url
    else:
        started = await flows.start_connect(
            session=session.owner,
            language=body.language,
            return_url=body.return_url,
            tag=body.tag,
            options=options,
        )
    await session.keep()
    return ConnectSessionOut(
        flow_id=started.flow.flow_id,
        iframe_url=started.iframe_url,
        connect_origin=started.connect_origin,
        expires_at=started.flow.expires_at,
        hosted_url=hosted_url,
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
    await rotation.after(read.connected_now)
    return FlowOut.of(read.flow)
