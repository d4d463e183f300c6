"""Connect on mobile: the BFF's hosted Connect page, and the handoff code it ends with.

A native app starts a Connect flow with a PKCE challenge (`POST /v1/connect/sessions`). It gets
`hosted_url` = `{BFF_PUBLIC_URL}/v1/connect/hosted/{flow_id}#ticket=<ticket>` and opens it in the
system browser (or in a web view of its own choosing). The fragment never reaches a server, a
proxy or an access log. The steps, each single use:

1. `ticket`: 256 random bits; Redis keeps its SHA-256 (and the flow's Connect options) until
   the page opens. `open` takes it with GETDEL, mints a fresh authorize token (only this browser
   ever sees it) and binds the flow to the page: a new random value set as an HttpOnly cookie,
   whose SHA-256 Redis keeps. A reload of the page opens again with that cookie alone.
2. `complete`: the page posts Connect's loginId with the cookie; the BFF seals it into the flow
   and issues the handoff code (`Flows.issue_handoff`), answering only where to go next:
   `return_url?flow_id=…&handoff_code=…`. The loginId appears in no URL and no answer.
3. The app redeems the code with its verifier (`POST /v1/flows/{flow_id}/handoff`), as for OAuth.

Every refusal is `handoff_invalid`: which part was wrong is not told.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from app.errors import AppError, HandoffInvalid, StateInvalid
from app.flinks import ConnectOptionError, build_connect_url
from app.flows.records import INSTITUTION_ID, FlowRecord, Language
from app.flows.service import ConnectSession, Flows

log = logging.getLogger("app.flows")

TICKET = re.compile(r"[A-Za-z0-9_-]{43}")
BINDING = TICKET


@dataclass(frozen=True, slots=True)
class HostedStart:
    """A native Connect flow and the page the app opens (its fragment carries the ticket)."""

    session: ConnectSession
    hosted_url: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class HostedPage:
    """What the opened page gets: the iframe URL (a fresh token in it) and Connect's origin;
    `binding` goes into the page's cookie (None: the cookie it sent stays)."""

    iframe_url: str = field(repr=False)
    connect_origin: str
    binding: str | None = field(default=None, repr=False)


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _matches(expected_digest: object, value: str | None) -> bool:
    return (
        isinstance(expected_digest, str)
        and value is not None
        and TICKET.fullmatch(value) is not None
        and secrets.compare_digest(expected_digest, _digest(value))
    )


def handoff_location(return_url: str, flow_id: str, code: str) -> str:
    """The app's return URL with the flow id and the handoff code (its own query kept)."""
    parts = urlsplit(return_url)
    query = [*parse_qsl(parts.query, keep_blank_values=True)]
    query += [("flow_id", flow_id), ("handoff_code", code)]
    return urlunsplit(parts._replace(query=urlencode(query), fragment=""))


class HostedConnect:
    """`page_prefix`: the hosted page's URL without the flow id, from BFF_PUBLIC_URL only."""

    def __init__(self, flows: Flows, *, page_prefix: str) -> None:
        self._flows = flows
        self._store = flows.store
        self._prefix = page_prefix

    async def start(
        self,
        *,
        session: str,
        language: Language,
        return_url: str | None,
        tag: str | None,
        options: Mapping[str, object],
        code_challenge: str,
    ) -> HostedStart:
        started = await self._flows.start_connect(
            session=session,
            language=language,
            return_url=return_url,
            tag=tag,
            options=options,
            code_challenge=code_challenge,
        )
        flow_id = started.flow.flow_id
        ticket = secrets.token_urlsafe(32)
        record = {"ticket": _digest(ticket), "options": dict(options)}
        await self._store.put_ticket(flow_id, json.dumps(record))
        return HostedStart(started, f"{self._prefix}{flow_id}#ticket={ticket}")

    async def open(self, *, flow_id: str, ticket: str | None, binding: str | None) -> HostedPage:
        """With the ticket (once): a new page binding. Without: the page's own cookie (a
        reload). Either way a freshly minted token in the iframe URL."""
        flow = await self._native_flow(flow_id)
        new_binding: str | None = None
        if ticket is not None:
            record = _record(await self._store.take_ticket(flow_id))
            if not _matches(record.get("ticket"), ticket):
                raise self._refused(flow_id)
            new_binding = secrets.token_urlsafe(32)
            page = {"binding": _digest(new_binding), "options": record.get("options", {})}
            await self._store.put_page(flow_id, json.dumps(page))
        else:
            page = _record(await self._store.get_page(flow_id))
            if not _matches(page.get("binding"), binding):
                raise self._refused(flow_id)
        options = page.get("options")
        minted = await self._flows.mint_token()
        redirect_url = self._prefix + flow_id
        try:
            iframe_url = build_connect_url(
                self._flows.config.connect_url,
                authorize_token=minted.token.get_secret_value(),
                demo=self._flows.config.demo,
                language=flow.language,
                redirect_url=redirect_url,
                allowed_redirect_urls=(redirect_url,),
                tag=flow.tag,
                options=options if isinstance(options, dict) else {},
            )
        except ConnectOptionError as exc:  # checked when the flow started; not expected here
            raise self._refused(flow_id) from exc
        log.info("flow.hosted_opened", extra={"flow_id": flow_id})
        return HostedPage(iframe_url, self._flows.config.connect_origin, new_binding)

    async def complete(
        self, *, flow_id: str, binding: str | None, login_id: str, institution: str | None
    ) -> str:
        """Seals Connect's loginId into the flow and answers where the page goes: the app's
        return URL with the handoff code. The same page with the same loginId again (a retry
        after a lost answer; Connect's REDIRECT followed by its own navigation back to the page)
        gets the same answer: the code stays single use at the redemption."""
        flow = await self._native_flow(flow_id, handed_off=True)
        page = _record(await self._store.get_page(flow_id))
        return_url = flow.return_url
        if not _matches(page.get("binding"), binding) or return_url is None:
            raise self._refused(flow_id)
        if flow.awaiting_handoff:
            return await self._replayed(flow_id, page, login_id)
        if institution is not None and INSTITUTION_ID.fullmatch(institution):
            flow = flow.model_copy(update={"institution": institution})
        try:
            code = await self._flows.issue_handoff(flow, login_id)
        except StateInvalid as exc:  # another request moved the flow on first
            raise self._refused(flow_id) from exc
        location = handoff_location(return_url, flow_id, code)
        page["location"] = self._store.seal(location, flow_id)
        await self._store.put_page(flow_id, json.dumps(page))
        return location

    async def _replayed(self, flow_id: str, page: dict[str, object], login_id: str) -> str:
        sealed = page.get("location")
        bound = await self._store.get_login_id(flow_id)
        location = self._store.unseal(sealed, flow_id) if isinstance(sealed, str) else None
        if (
            location is None
            or bound is None
            or not secrets.compare_digest(bound.lower(), login_id.lower())
        ):
            raise self._refused(flow_id)
        return location

    async def _native_flow(self, flow_id: str, *, handed_off: bool = False) -> FlowRecord:
        """A native Connect flow still waiting for its loginId (or, `handed_off`, waiting for
        the app to redeem the code it was handed)."""
        flow = await self._store.get_flow(flow_id)
        if (
            flow is None
            or flow.kind != "connect"
            or flow.code_challenge is None
            or flow.status != "started"
            or (flow.awaiting_handoff and not handed_off)
            or flow.expires_at <= self._flows.clock.now()
        ):
            raise self._refused(flow_id)
        return flow

    @staticmethod
    def _refused(flow_id: str) -> AppError:
        log.warning("security.hosted_refused", extra={"flow_id": flow_id})
        return HandoffInvalid()


def _record(raw: str | None) -> dict[str, object]:
    if raw is None:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
