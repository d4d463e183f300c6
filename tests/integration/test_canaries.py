"""Leak canaries: run the flows over real sockets with every logger at DEBUG, then look for each
secret the run handled (secret key, API key, authorize tokens, loginIds, OAuth states, RequestIds,
session cookies, a service token, account numbers, transaction descriptions) in every log line,
every response body and header, and in Redis."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from redis import Redis as SyncRedis

from app.main import create_app
from app.observability import configure_logging
from app.sandbox import data as sandbox_data
from app.sandbox.config import SandboxSettings
from tests.clock import FakeClock
from tests.conftest import make_settings
from tests.figures import record
from tests.integration.conftest import ANSWERS, PASSWORD
from tests.integration.event_receiver import Receiver, receiving
from tests.integration.link_steps import short_poll_gap
from tests.integration.servers import bff_in_thread
from tests.ports import reserve_port
from tests.sandbox.server import running_sandbox
from tests.waiting import wait_until

LOGGERS = ("", "app", "uvicorn", "uvicorn.error", "uvicorn.access", "httpx", "httpcore")


class RawRecords(logging.Handler):
    """Every record as emitted, before any formatter: message, arguments and extras."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.getMessage()} {record.args!r} {record.__dict__!r}")


@pytest.fixture
def captured_logs() -> Iterator[tuple[io.StringIO, RawRecords]]:
    stream, raw = io.StringIO(), RawRecords()
    configure_logging("DEBUG", stream=stream)
    root = logging.getLogger()
    root.addHandler(raw)
    saved = {name: logging.getLogger(name).level for name in LOGGERS}
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield stream, raw
    root.removeHandler(raw)
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)
    root.setLevel(logging.WARNING)


def test_no_secret_reaches_a_log_a_response_or_redis_in_plain_text(
    redis_url: str, captured_logs: tuple[io.StringIO, RawRecords], monkeypatch: pytest.MonkeyPatch
) -> None:
    short_poll_gap(monkeypatch)  # the link data below is asked for twice (202, then 200)
    service_token = f"canary-service-{secrets.token_hex(8)}"
    secret_key = f"canary-secret-{secrets.token_hex(8)}"
    api_key = f"canary-api-key-{secrets.token_hex(8)}"
    webhook_secret = (
        "whsec_" + base64.b64encode(f"canary-whsec-{secrets.token_hex(8)}".encode()).decode()
    )
    reservation = reserve_port()
    port, base = reservation.port, reservation.url
    receiver = Receiver(webhook_secret)  # the host backend: hears every event out
    sandbox_settings = SandboxSettings(
        secret_key=secret_key,
        api_key=api_key,
        redirect_uris=[f"{base}/v1/oauth/callback"],
        dispatched_seconds=600,
    )
    clock = FakeClock()
    responses: list[httpx.Response] = []
    states: list[str] = []
    with running_sandbox(sandbox_settings) as sandbox, receiving(receiver) as webhook_url:
        settings = make_settings(
            redis_url,
            BFF_PUBLIC_URL=base,
            BFF_RETURN_URLS=f"{base}/",
            BFF_CORS_ORIGINS=base,
            BFF_PORT=port,
            FLINKS_API_URL=sandbox.base_url,
            FLINKS_CONNECT_URL=f"{sandbox.base_url}/v2/",
            FLINKS_CUSTOMER_ID=sandbox.customer_id,
            FLINKS_SECRET_KEY=secret_key,
            FLINKS_API_KEY=api_key,
            # Live, so that the bank asks its question through the BFF too.
            FLINKS_CONNECT_AUTHORIZE="live",
            BFF_SERVICE_TOKENS=hashlib.sha256(service_token.encode()).hexdigest(),
            BFF_WEBHOOK_URL=webhook_url,
            BFF_WEBHOOK_SECRET=webhook_secret,
        )
        with (
            bff_in_thread(create_app(settings, clock=clock), reservation),
            httpx.Client(base_url=base, timeout=10) as browser,
            httpx.Client(base_url=sandbox.base_url, timeout=10) as bank,
        ):

            def keep(response: httpx.Response) -> httpx.Response:
                responses.append(response)
                return response

            # Connect: no MFA, MFA (right answer), MFA (wrong answer), an error user, a bank
            # that answers 202 and is followed on AuthorizeAsync (with the API key).
            for username, answer in (
                ("greatday_nomfa", None),
                ("Greatday", "right"),
                ("Greatday", "wrong"),
                ("test_disabled_account", None),
                ("test_dispatched", None),
            ):
                started = keep(browser.post("/v1/connect/sessions", json={})).json()
                token = parse_qs(urlsplit(started["iframe_url"]).query)["authorizeToken"][0]
                if username in ("test_disabled_account", "test_dispatched"):
                    login_id = bank.post("/__sandbox/logins", json={"username": username}).json()[
                        "login_id"
                    ]
                else:
                    login_id = bank.post(
                        "/__sandbox/connect/complete",
                        json={
                            "authorize_token": token,
                            "username": username,
                            "password": PASSWORD,
                            "answers": ANSWERS,
                        },
                    ).json()["login_id"]
                # Where a Connect that ignores jsRedirect sends the browser (redirectUrl).
                keep(
                    browser.get(
                        f"/v1/connect/return/{started['flow_id']}",
                        params={"loginId": login_id, "institution": "FlinksCapital"},
                        headers={"Accept": "text/html"},
                    )
                )
                flow = keep(
                    browser.post(
                        f"/v1/connect/sessions/{started['flow_id']}/complete",
                        json={"login_id": login_id},
                    )
                ).json()
                if flow["status"] == "pending":
                    for job in bank.get("/__sandbox/dispatched").json():
                        bank.post(f"/__sandbox/dispatched/{job['request_id']}/finish")

                    def settled(flow_id: str = started["flow_id"]) -> bool:
                        clock.advance(10)  # the poll interval, on the BFF's clock
                        read = keep(browser.get(f"/v1/flows/{flow_id}"))
                        return bool(read.json()["status"] == "connected")

                    wait_until(settled, what="the dispatched flow to connect", interval=0.05)
                if flow["status"] == "mfa_required":
                    prompt = flow["mfa"]["challenges"][0]["prompt"]
                    reply = ANSWERS[prompt] if answer == "right" else ["nope"]
                    keep(
                        browser.post(
                            f"/v1/flows/{started['flow_id']}/mfa",
                            json={"responses": {prompt: reply}},
                        )
                    )
                keep(browser.get(f"/v1/flows/{started['flow_id']}"))
            # OAuth: linked, denied, replayed, foreign session.
            for deny in (False, True):
                start = keep(
                    browser.get("/v1/oauth/start", params={"institution": "FlinksCapital"})
                )
                done = bank.post(
                    "/__sandbox/oauth/complete",
                    json={
                        "session": start.headers["location"],
                        "username": "greatday_nomfa",
                        "password": PASSWORD,
                        "deny": deny,
                    },
                ).json()["location"]
                parts = urlsplit(done)
                states += parse_qs(parts.query)["state"]
                path = f"{parts.path}?{parts.query}"
                keep(browser.get(path))
                keep(browser.get(path))  # replay
                with httpx.Client(base_url=base) as stranger:
                    keep(stranger.get(path))
            keep(browser.post("/v1/authorize-tokens", json={}, headers={"Origin": base}))
            # Links: each one's accounts and every page of its transactions, the host backend's
            # read (its answer carries the loginId on purpose: not kept), then unlink.
            links = keep(browser.get("/v1/links")).json()["links"]
            assert links
            service = {"Authorization": f"Bearer {service_token}"}
            for link in links:
                data = f"/v1/links/{link['link_id']}"

                def ready(data: str = data) -> bool:
                    return keep(browser.get(f"{data}/accounts")).status_code == 200

                wait_until(ready, what="the link's account data", interval=0.1)
                cursor: str | None = None
                while True:
                    params = {"limit": 100} | ({"cursor": cursor} if cursor else {})
                    page = keep(browser.get(f"{data}/transactions", params=params)).json()
                    if not (cursor := page["next_cursor"]):
                        break
                with httpx.Client(base_url=base) as host:
                    read = host.get(f"/internal/v1/links/{link['link_id']}", headers=service)
                    assert read.status_code == 200
                assert keep(browser.delete(data)).status_code == 204
            wait_until(
                lambda: (
                    {"link.connected", "link.failed", "accounts.ready", "link.deleted"}
                    <= set(receiver.types())
                ),
                what="every kind of event out at the receiver",
            )
            cookies = list(browser.cookies.values())
            calls: list[dict[str, Any]] = bank.get("/__sandbox/calls").json()

        tokens = {c["token"] for c in calls if c.get("token")}
        login_ids = {c["login_id"] for c in calls if c.get("login_id")}
        request_ids = {
            c[k] for c in calls for k in ("request_id", "response_request_id") if c.get(k)
        }
        assert any(c["endpoint"] == "AuthorizeAsync" and c["api_key"] == api_key for c in calls)
        assert any(c["endpoint"] == "DeleteCard" for c in calls)
        canaries: dict[str, set[str]] = {
            "service token": {service_token},
            "account number": {t.account_number for t in sandbox_data.ACCOUNTS},
            # Long enough not to occur by chance (a log line has words like "Transfer" too).
            "transaction description": {
                txn.description
                for template in sandbox_data.ACCOUNTS
                for txn in sandbox_data.history(template.key)
                if len(txn.description) >= 12
            },
            "secret key": {secret_key},
            "API key": {api_key},
            "authorize token": tokens,
            "loginId": login_ids,
            "RequestId": request_ids,
            "state": set(states),
            "session cookie": set(cookies),
            "webhook secret": {webhook_secret, webhook_secret.removeprefix("whsec_")},
        }
        assert all(canaries.values()), {k: len(v) for k, v in canaries.items()}

    stream, raw = captured_logs
    formatted = stream.getvalue()
    assert '"logger": "httpx"' in formatted or '"logger": "httpcore' in formatted  # captured
    raw_text = "\n".join(raw.lines)
    bodies = "\n".join(r.text + repr(dict(r.headers)) for r in responses)
    events_out = "\n".join(json.dumps(d.body) + repr(d.headers) for d in receiver.deliveries)
    # Authorize tokens reach the browser on purpose (inside iframe URLs) and cookies in
    # Set-Cookie: they are checked in the logs only.
    in_responses = {
        k: v
        for k, v in canaries.items()
        if k not in ("authorize token", "session cookie", "transaction description")
    }
    hits = 0
    for kind, values in canaries.items():
        for value in values:
            for where, text in (("log", formatted), ("raw log record", raw_text)):
                if value in text:
                    hits += 1
                    pytest.fail(f"a {kind} appears in a {where}")
            if kind in in_responses and value in bodies:
                hits += 1
                pytest.fail(f"a {kind} appears in a response")
            if value in events_out:
                hits += 1
                pytest.fail(f"a {kind} appears in an event sent to the host backend")

    direct = SyncRedis.from_url(redis_url, decode_responses=True)
    dump = " ".join(f"{k} {direct.dump(k)!r}" for k in direct.scan_iter("*"))
    direct.close()
    for login_id in login_ids:
        assert login_id not in dump
    record(
        "canaries",
        f"{sum(len(v) for v in canaries.values())} canary values "
        f"({', '.join(f'{len(v)} {k}' for k, v in canaries.items())}) over "
        f"{len(formatted.splitlines())} log lines, {len(responses)} responses and "
        f"{len(receiver.deliveries)} events out: hits = {hits}",
    )
