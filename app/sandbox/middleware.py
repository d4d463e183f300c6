"""Pure ASGI middleware: records every call and injects latency and faults on the API paths."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import unquote_plus

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.sandbox import payloads as p
from app.sandbox.faults import Fault
from app.sandbox.state import CallRecord, SandboxState

CONTROL_PREFIX = "/__sandbox"
_SCOPE_KEY = "sandbox.call"


def call_record(request: Request) -> CallRecord | None:
    """The record of the call being served, for handlers to fill in."""
    record = request.scope.get(_SCOPE_KEY)
    return record if isinstance(record, CallRecord) else None


def api_endpoint(path: str) -> str | None:
    """The canonical endpoint name of a Flinks API path, or None for anything else."""
    parts = path.split("/")
    if len(parts) < 4 or parts[1].lower() != "v3":
        return None
    if len(parts) in (5, 6) and parts[3].lower() == "bankingservices":
        return p.BANKING_ENDPOINTS.get(parts[4].lower())
    if len(parts) == 4 and parts[2].lower() == "oauth" and parts[3].lower() == "authorize":
        return p.OAUTH_ENDPOINT
    return None


class SandboxMiddleware:
    def __init__(self, app: ASGIApp, state: SandboxState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or path.startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return
        state = self.state
        endpoint = api_endpoint(path)
        query = scope.get("query_string", b"")
        record = CallRecord(
            seq=state.next_call_seq(),
            at=state.clock.now(),
            method=scope["method"],
            path=path,
            endpoint=endpoint,
            query=_query_names(query) if query else None,
        )
        scope[_SCOPE_KEY] = record
        started = time.perf_counter()

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
            await send(message)

        try:
            fault = await self._fault_for(endpoint)
            record.fault = fault.value if fault else None
            if fault is Fault.DROP:
                # Announce a body, send none and return: uvicorn closes the connection.
                await send({"type": "http.response.start", "status": 200, "headers": [
                    (b"content-type", b"application/json"), (b"content-length", b"64")
                ]})  # fmt: skip
                return
            if fault is Fault.ERROR:
                faults = state.faults
                body = p.error_body(faults.error_status, faults.error_code, "Injected fault")
                record.flinks_code = faults.error_code
                await JSONResponse(body, faults.error_status)(scope, receive, recording_send)
                return
            if fault is Fault.TIMEOUT:
                hold = state.faults.timeout_seconds

                async def late_send(message: Message) -> None:
                    if message["type"] == "http.response.start":
                        await asyncio.sleep(hold)
                    await recording_send(message)

                await self.app(scope, receive, late_send)
                return
            await self.app(scope, receive, recording_send)
        finally:
            record.duration_ms = round((time.perf_counter() - started) * 1000, 3)
            state.calls.append(record)

    async def _fault_for(self, endpoint: str | None) -> Fault | None:
        faults = self.state.faults
        if endpoint is None or not faults.active or not faults.applies_to(endpoint):
            return None
        delay = faults.delay_seconds(self.state.random)
        if delay > 0:
            await asyncio.sleep(delay)
        return faults.draw(self.state.random)


def _query_names(query: bytes) -> list[str]:
    names: list[str] = []
    for pair in query.decode("latin-1").split("&"):
        name = unquote_plus(pair.split("=", 1)[0])
        if name and name not in names:
            names.append(name)
    return names
