"""The sandbox's Flinks webhooks, received by a real HTTP receiver: signed KYC then
GetAccountsDetail after an extraction, either header name, retries (forced and on the receiver's
failures), duplicates, a bad signature, the control API's trigger, and no secret in any listing."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.sandbox import cli
from app.sandbox.config import SandboxSettings
from tests.ports import reserve_port, serve_in_thread
from tests.sandbox.conftest import clean_settings
from tests.sandbox.flinks import SandboxApi
from tests.sandbox.server import SandboxHandle, running_sandbox
from tests.waiting import wait_until

SECRET = "whsec-sandbox-test-3f9a"
LEGACY_HEADER = "flinks-authenticity-key"
NEW_HEADER = "X-Flinks-Signature"
RETRY_SECONDS = 0.05


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data

    @property
    def response_type(self) -> str:
        return str(self.json["ResponseType"])


@dataclass
class Receiver:
    """A webhook endpoint that records what arrives and answers as told."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    fail_next: int = 0  # answer 500 to this many more requests
    status: int = 200  # the answer after those
    gate: threading.Event = field(default_factory=threading.Event)  # cleared: hold answers
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.gate.set()

    def clear(self) -> None:
        with self.lock:
            self.received.clear()
            self.fail_next = 0
            self.status = 200
        self.gate.set()

    def snapshot(self) -> list[Received]:
        with self.lock:
            return list(self.received)

    async def endpoint(self, request: Request) -> Response:
        body = await request.body()
        with self.lock:
            self.received.append(Received({k.lower(): v for k, v in request.headers.items()}, body))
            failing = self.fail_next > 0
            self.fail_next -= int(failing)
            status = 500 if failing else self.status
        # The receiver's own slowness (bounded, so a failed test cannot hang the server).
        await asyncio.to_thread(self.gate.wait, 60)
        return Response(status_code=status)

    def wait_for(self, count: int) -> list[Received]:
        def arrived() -> list[Received]:
            seen = self.snapshot()
            return seen if len(seen) >= count else []

        return wait_until(
            arrived,
            what=f"{count} webhook deliveries at the receiver",
            detail=lambda: f"received: {[r.response_type for r in self.snapshot()]}",
        )


def signed_with(secret: str, received: Received, header: str) -> bool:
    sent = received.headers.get(header.lower())
    digest = hmac.new(secret.encode(), received.body, hashlib.sha256).digest()
    return sent is not None and hmac.compare_digest(sent, base64.b64encode(digest).decode())


@pytest.fixture(scope="module")
def _receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    app = Starlette(routes=[Route("/hook", receiver.endpoint, methods=["POST"])])
    options = {"log_level": "warning", "lifespan": "off"}
    with serve_in_thread(app, name="webhook-receiver", options=options) as served:
        receiver.url = f"{served.url}/hook"
        yield receiver


@pytest.fixture(scope="module")
def _hooked_sandbox(_receiver: Receiver) -> Iterator[SandboxHandle]:
    settings = clean_settings(
        webhook_url=_receiver.url, webhook_secret=SECRET, webhook_retry_seconds=RETRY_SECONDS
    )
    with running_sandbox(settings) as sandbox:
        yield sandbox


@pytest.fixture
def receiver(_receiver: Receiver, hooked: SandboxApi) -> Receiver:
    _receiver.clear()
    return _receiver


@pytest.fixture
def hooked(_hooked_sandbox: SandboxHandle, http: httpx.Client) -> SandboxApi:
    """A sandbox whose webhooks go to the receiver, reset for each test."""
    client = SandboxApi(_hooked_sandbox, http)
    assert client.control("POST", "reset").status_code == 204
    return client


def _switch(api: SandboxApi, **values: Any) -> None:
    response = api.control("PATCH", "webhooks/switches", values)
    assert response.status_code == 200, response.text


def _deliveries(api: SandboxApi, **params: str) -> list[dict[str, Any]]:
    response = api.http.get(f"{api.sandbox.base_url}/__sandbox/webhooks", params=params)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


def _settled(api: SandboxApi, count: int) -> list[dict[str, Any]]:
    """The listing once `count` deliveries exist and none is pending."""

    def done() -> list[dict[str, Any]]:
        listed = _deliveries(api)
        finished = len(listed) >= count and all(d["state"] != "pending" for d in listed)
        return listed if finished else []

    return wait_until(done, what=f"{count} settled webhook deliveries", detail=lambda: "")


def _deliver(api: SandboxApi, login_id: str, **extra: Any) -> list[dict[str, Any]]:
    response = api.control("POST", "webhooks/deliver", {"login_id": login_id, **extra})
    assert response.status_code == 202, response.text
    queued: list[dict[str, Any]] = response.json()
    return queued


# -- after an extraction ----------------------------------------------------------------------


def test_an_api_extraction_posts_kyc_then_the_accounts_detail(
    hooked: SandboxApi, receiver: Receiver
) -> None:
    session = hooked.connect("greatday_nomfa", Tag="order-42")
    request_id = session["RequestId"]
    kyc = receiver.wait_for(1)
    pending = hooked.data("GetAccountsDetail", {"RequestId": request_id})
    both = receiver.wait_for(2)
    done = hooked.get(f"GetAccountsDetailAsync/{request_id}")

    assert pending.status_code == 202
    assert done.status_code == 200
    assert [r.response_type for r in kyc] == ["KYC"]
    assert [r.response_type for r in both] == ["KYC", "GetAccountsDetail"]
    first, second = both
    assert first.json["Holders"][0]["Name"] == "Alex Tremblay"
    assert first.json["Login"]["Id"] == session["Login"]["Id"]
    assert (first.json["RequestId"], first.json["Tag"]) == (request_id, "order-42")
    assert second.json == {**done.json(), "ResponseType": "GetAccountsDetail"}
    assert second.json["Tag"] == "order-42"
    assert second.json["Login"]["Id"] == session["Login"]["Id"]
    for received in both:
        assert signed_with(SECRET, received, LEGACY_HEADER)
        assert NEW_HEADER.lower() not in received.headers
        assert received.headers["content-type"] == "application/json"


def test_a_connect_sign_in_posts_kyc_then_the_accounts_detail_by_itself(
    hooked: SandboxApi, receiver: Receiver
) -> None:
    linked = hooked.control(
        "POST",
        "connect/complete",
        {
            "authorize_token": hooked.token(),
            "username": "Greatday",
            "password": "Everyday",
            "answers": {"What city were you born in?": ["Montreal"]},
            "tag": "connect-7",
        },
    )
    received = receiver.wait_for(2)

    assert linked.status_code == 200, linked.text
    assert [r.response_type for r in received] == ["KYC", "GetAccountsDetail"]
    detail = received[1].json
    assert detail["Login"]["Id"] == linked.json()["login_id"]
    assert detail["RequestId"] == linked.json()["request_id"]
    assert detail["Tag"] == "connect-7"
    assert len(detail["Accounts"]) == 5
    assert all(signed_with(SECRET, r, LEGACY_HEADER) for r in received)


def test_cached_authorize_and_failed_sign_ins_send_nothing(
    hooked: SandboxApi, receiver: Receiver
) -> None:
    login_id = hooked.issue_login("greatday_nomfa")
    cached = hooked.authorize({"LoginId": login_id, "MostRecentCached": True})
    disabled = hooked.live("test_disabled_account")
    wrong = hooked.live("greatday_nomfa", password="nope")

    assert (cached.status_code, disabled.status_code, wrong.status_code) == (200, 401, 401)
    assert _deliveries(hooked) == []
    assert receiver.snapshot() == []


def test_the_api_answer_does_not_wait_for_the_receiver(
    hooked: SandboxApi, receiver: Receiver
) -> None:
    receiver.gate.clear()  # the receiver holds every answer until released

    answer = hooked.live("greatday_nomfa")
    receiver.wait_for(1)
    while_held = _deliveries(hooked)
    receiver.gate.set()
    settled = _settled(hooked, 1)

    assert answer.status_code == 200
    assert [(d["state"], d["attempt_count"]) for d in while_held] == [("pending", 0)]
    assert [(d["state"], d["statuses"]) for d in settled] == [("delivered", [200])]


# -- signatures -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "other"), [(LEGACY_HEADER, NEW_HEADER), (NEW_HEADER, LEGACY_HEADER)]
)
def test_the_signature_goes_in_the_chosen_header(
    hooked: SandboxApi, receiver: Receiver, header: str, other: str
) -> None:
    _switch(hooked, webhook_header=header)
    login_id = hooked.issue_login("greatday_nomfa")

    _deliver(hooked, login_id, response_type="KYC")
    (received,) = receiver.wait_for(1)
    (listed,) = _settled(hooked, 1)

    assert signed_with(SECRET, received, header)
    assert other.lower() not in received.headers
    assert listed["header"] == header
    assert listed["signed"] is True


def test_bad_signature_signs_with_a_wrong_key(hooked: SandboxApi, receiver: Receiver) -> None:
    _switch(hooked, webhook_bad_signature=True)
    login_id = hooked.issue_login("greatday_nomfa")

    _deliver(hooked, login_id, response_type="KYC")
    (received,) = receiver.wait_for(1)
    (listed,) = _settled(hooked, 1)

    assert received.headers.get(LEGACY_HEADER)
    assert not signed_with(SECRET, received, LEGACY_HEADER)
    assert listed["bad_signature"] is True


def test_without_a_secret_deliveries_are_unsigned(receiver: Receiver, http: httpx.Client) -> None:
    settings = clean_settings(webhook_url=receiver.url, webhook_retry_seconds=RETRY_SECONDS)
    with running_sandbox(settings) as sandbox:
        api = SandboxApi(sandbox, http)
        _deliver(api, api.issue_login("greatday_nomfa"), response_type="KYC")
        (received,) = receiver.wait_for(1)
        (listed,) = _settled(api, 1)

    assert LEGACY_HEADER not in received.headers
    assert NEW_HEADER.lower() not in received.headers
    assert listed["signed"] is False


# -- retries and duplicates -------------------------------------------------------------------


def test_fail_first_counts_attempts_as_failed_and_sends_the_same_body_again(
    hooked: SandboxApi, receiver: Receiver
) -> None:
    _switch(hooked, webhook_fail_first=2)
    login_id = hooked.issue_login("greatday_nomfa")

    _deliver(hooked, login_id, response_type="KYC")
    (listed,) = _settled(hooked, 1)
    received = receiver.snapshot()

    assert listed["state"] == "delivered"
    assert listed["attempt_count"] == 3
    assert listed["statuses"] == [200, 200, 200]
    assert [a["forced_failure"] for a in listed["attempts"]] == [True, True, False]
    assert len(received) == 3
    assert len({r.body for r in received}) == 1
    assert all(signed_with(SECRET, r, LEGACY_HEADER) for r in received)


def test_the_receivers_failures_are_retried(hooked: SandboxApi, receiver: Receiver) -> None:
    receiver.fail_next = 2
    login_id = hooked.issue_login("greatday_nomfa")

    _deliver(hooked, login_id, response_type="GetAccountsDetail")
    (listed,) = _settled(hooked, 1)

    assert listed["statuses"] == [500, 500, 200]
    assert listed["state"] == "delivered"
    assert len(receiver.snapshot()) == 3


def test_a_receiver_that_never_answers_200_gets_ten_attempts(
    hooked: SandboxApi, receiver: Receiver
) -> None:
    _switch(hooked, webhook_retry_seconds=0)
    receiver.status = 503
    login_id = hooked.issue_login("greatday_nomfa")

    _deliver(hooked, login_id, response_type="KYC")
    (listed,) = _settled(hooked, 1)

    assert listed["state"] == "gave_up"
    assert listed["statuses"] == [503] * 10
    assert len(receiver.snapshot()) == 10


def test_an_unreachable_receiver_is_retried_and_recorded(
    http: httpx.Client, receiver: Receiver
) -> None:
    # A reserved port is bound but never listens: every connection is refused.
    with (
        reserve_port() as closed,
        running_sandbox(
            clean_settings(webhook_url=f"{closed.url}/hook", webhook_retry_seconds=0)
        ) as sandbox,
    ):
        api = SandboxApi(sandbox, http)
        _deliver(api, api.issue_login("greatday_nomfa"), response_type="KYC")
        (listed,) = _settled(api, 1)

    assert listed["state"] == "gave_up"
    assert listed["statuses"] == [None] * 10
    assert {a["error"] for a in listed["attempts"]} == {"ConnectError"}


def test_duplicates_deliver_each_event_several_times(
    hooked: SandboxApi, receiver: Receiver
) -> None:
    _switch(hooked, webhook_duplicates=3)
    login_id = hooked.issue_login("greatday_nomfa")

    queued = _deliver(hooked, login_id, response_type="KYC")
    listed = _settled(hooked, 3)
    received = receiver.snapshot()

    assert [d["copy"] for d in queued] == [1, 2, 3]
    assert len({d["event_id"] for d in listed}) == 1
    assert [d["state"] for d in listed] == ["delivered"] * 3
    assert len(received) == 3
    assert len({r.body for r in received}) == 1


def test_one_logins_events_keep_their_order_through_retries(
    hooked: SandboxApi, receiver: Receiver
) -> None:
    _switch(hooked, webhook_fail_first=1)
    login_id = hooked.issue_login("greatday_nomfa")

    _deliver(hooked, login_id)
    listed = _settled(hooked, 2)
    received = receiver.snapshot()

    assert [d["response_type"] for d in listed] == ["KYC", "GetAccountsDetail"]
    assert [r.response_type for r in received] == [
        "KYC",
        "KYC",
        "GetAccountsDetail",
        "GetAccountsDetail",
    ]


# -- the control API --------------------------------------------------------------------------


def test_the_control_api_triggers_kyc_then_the_accounts_detail(
    hooked: SandboxApi, receiver: Receiver
) -> None:
    login_id = hooked.issue_login("Greatday")

    queued = _deliver(hooked, login_id, request_id="req-1", tag="manual")
    received = receiver.wait_for(2)
    listed = _settled(hooked, 2)

    assert [d["response_type"] for d in queued] == ["KYC", "GetAccountsDetail"]
    assert [r.response_type for r in received] == ["KYC", "GetAccountsDetail"]
    assert {(r.json["RequestId"], r.json["Tag"]) for r in received} == {("req-1", "manual")}
    assert all(r.json["Login"]["Id"] == login_id for r in received)
    assert [d["login_id"] for d in listed] == [login_id, login_id]
    assert _deliveries(hooked, response_type="KYC") == [listed[0]]
    assert _deliveries(hooked, login_id="someone-else") == []


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"login_id": "7b0f2c1e-0000-4000-8000-000000000000"}, 404),
        ({"login_id": "x", "response_type": "Investments"}, 422),
    ],
)
def test_the_trigger_refuses_what_it_cannot_send(
    hooked: SandboxApi, body: dict[str, Any], status: int
) -> None:
    response = hooked.control("POST", "webhooks/deliver", body)

    assert response.status_code == status
    assert _deliveries(hooked) == []


def test_without_a_url_nothing_is_sent(flinks: SandboxApi) -> None:
    flinks.connect("greatday_nomfa")
    response = flinks.control(
        "POST", "webhooks/deliver", {"login_id": flinks.issue_login("greatday_nomfa")}
    )

    assert response.status_code == 409
    assert response.json()["error"] == "webhooks_off"
    assert _deliveries(flinks) == []


def test_no_listing_shows_the_secret_or_a_signature(hooked: SandboxApi, receiver: Receiver) -> None:
    login_id = hooked.issue_login("greatday_nomfa")
    queued = hooked.control("POST", "webhooks/deliver", {"login_id": login_id})
    received = receiver.wait_for(2)
    _settled(hooked, 2)
    signatures = [r.headers[LEGACY_HEADER] for r in received]

    texts = [
        queued.text,
        hooked.control("GET", "webhooks").text,
        hooked.control("GET", "webhooks/switches").text,
        hooked.control("GET", "switches").text,
        hooked.control("GET", "state").text,
    ]

    for text in texts:
        assert SECRET not in text
        assert not any(signature in text for signature in signatures)


def test_reset_and_delete_forget_the_deliveries(hooked: SandboxApi, receiver: Receiver) -> None:
    _deliver(hooked, hooked.issue_login("greatday_nomfa"), response_type="KYC")
    _settled(hooked, 1)

    deleted = hooked.control("DELETE", "webhooks")

    assert deleted.status_code == 204
    assert _deliveries(hooked) == []


# -- the switches -----------------------------------------------------------------------------

WEBHOOK_DEFAULTS = {
    "webhook_header": "flinks-authenticity-key",
    "webhook_fail_first": 0,
    "webhook_retry_seconds": 0.5,
    "webhook_duplicates": 1,
    "webhook_bad_signature": False,
}
WEBHOOK_CHANGED = {
    "webhook_header": "X-Flinks-Signature",
    "webhook_fail_first": 3,
    "webhook_retry_seconds": 0.25,
    "webhook_duplicates": 2,
    "webhook_bad_signature": True,
}


def test_the_switches_are_read_merged_and_restored(flinks: SandboxApi) -> None:
    initial = flinks.control("GET", "webhooks/switches").json()
    patched = flinks.control("PATCH", "webhooks/switches", {"webhook_fail_first": 2}).json()
    reset = flinks.control("POST", "reset")
    after_reset = flinks.control("GET", "webhooks/switches").json()

    assert initial == WEBHOOK_DEFAULTS
    assert patched == {**WEBHOOK_DEFAULTS, "webhook_fail_first": 2}
    assert reset.status_code == 204
    assert after_reset == WEBHOOK_DEFAULTS
    assert "webhook_header" not in flinks.control("GET", "switches").json()


@pytest.mark.parametrize(
    "body",
    [
        {"webhook_header": "X-Signature"},
        {"webhook_fail_first": 11},
        {"webhook_duplicates": 0},
        {"webhook_secret": "nope"},
    ],
)
def test_invalid_webhook_switches_are_refused(flinks: SandboxApi, body: dict[str, Any]) -> None:
    response = flinks.control("PATCH", "webhooks/switches", body)

    assert response.status_code == 422
    assert flinks.control("GET", "webhooks/switches").json() == WEBHOOK_DEFAULTS


def test_every_webhook_setting_has_an_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {**WEBHOOK_CHANGED, "webhook_url": "http://127.0.0.1:9/hook", "webhook_secret": "k"}
    for name, value in values.items():
        monkeypatch.setenv(f"SANDBOX_{name.upper()}", str(value))

    assert SandboxSettings().model_dump(include=set(values)) == values


def test_every_webhook_setting_has_a_cli_flag() -> None:
    values = {
        **WEBHOOK_CHANGED,
        "webhook_url": "https://hooks.example/flinks",
        "webhook_secret": "k",
    }
    argv: list[str] = []
    for name, value in values.items():
        argv += ["--" + name.replace("_", "-"), str(value)]

    settings = cli.settings_from_args(cli.build_parser().parse_args(argv))

    assert settings.model_dump(include=set(values)) == values


def test_a_webhook_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="webhook_url"):
        clean_settings(webhook_url="ftp://hooks.example/flinks")


def test_processing_announced_by_its_webhook_does_not_hold_up_delete_card(
    hooked: SandboxApi, receiver: Receiver
) -> None:
    """A client may take the data from the GetAccountsDetail webhook and never poll the Async
    endpoint: once the webhook is sent, processing is over, and DeleteCard is not CARD_IN_USE."""
    session = hooked.connect("greatday_nomfa")
    pending = hooked.data("GetAccountsDetail", {"RequestId": session["RequestId"]})
    assert pending.status_code == 202
    receiver.wait_for(2)  # KYC, then GetAccountsDetail
    login_id = session["Login"]["Id"]
    deleted = hooked.http.delete(
        f"{hooked.api}/DeleteCard/{login_id}", headers={"x-api-key": hooked.api_key}
    )
    assert deleted.status_code == 200, deleted.text
