"""The development receiver of the BFF's events out (app/receiver.py): it believes only what is
signed per Standard Webhooks with its secret, prints one line per event, marks repeats, and
`flinks-bff dev` runs it with a secret of the run."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from app.receiver import KEPT_EVENTS, RecentIds, create_receiver
from tests.dev_stack import ROOT, dev_environment, dev_stack
from tests.ports import reserve_port, serve_in_thread
from tests.waiting import wait_until

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
OTHER_SECRET = "whsec_" + base64.b64encode(bytes(range(32, 64))).decode()
Delivery = Callable[[], tuple[str, dict[str, str]]]


def _event(link_id: str = "lnk_1", kind: str = "link.connected") -> str:
    return json.dumps(
        {
            "type": kind,
            "timestamp": "2025-01-02T03:04:05Z",
            "data": {"link_id": link_id, "owner": "own_1", "institution": "FlinksCapital"},
        }
    )


def _signed(
    body: str, msg_id: str = "msg_1", *, secret: str = SECRET, at: datetime | None = None
) -> dict[str, str]:
    at = at or datetime.now(UTC)
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, at, body),
    }


@dataclass
class Receiver:
    url: str
    out: io.StringIO
    client: httpx.Client

    def post(self, body: str, headers: dict[str, str]) -> httpx.Response:
        return self.client.post(f"{self.url}/webhooks", content=body, headers=headers)

    def summary(self) -> Any:
        answer = self.client.get(f"{self.url}/webhooks")
        assert answer.status_code == 200
        return answer.json()

    def lines(self) -> list[str]:
        return self.out.getvalue().splitlines()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    out = io.StringIO()
    with (
        serve_in_thread(create_receiver(SECRET, out=out), name="receiver") as served,
        httpx.Client(timeout=10) as client,
    ):
        yield Receiver(served.url, out, client)


def test_a_signed_event_is_answered_204_and_printed_on_one_line(receiver: Receiver) -> None:
    body = _event()
    answer = receiver.post(body, _signed(body, "msg_abc"))
    assert answer.status_code == 204
    assert receiver.lines() == [
        "webhook link.connected msg_abc link=lnk_1 owner=own_1 institution=FlinksCapital"
    ]
    assert receiver.summary() == {
        "received": 1,
        "unique": 1,
        "refused": 0,
        "events": [
            {
                "id": "msg_abc",
                "type": "link.connected",
                "timestamp": "2025-01-02T03:04:05Z",
                "data": {"link_id": "lnk_1", "owner": "own_1", "institution": "FlinksCapital"},
            }
        ],
    }


def _tampered() -> tuple[str, dict[str, str]]:
    return _event("lnk_2"), _signed(_event("lnk_1"))


def _wrong_secret() -> tuple[str, dict[str, str]]:
    return _event(), _signed(_event(), secret=OTHER_SECRET)


def _unsigned() -> tuple[str, dict[str, str]]:
    return _event(), {"content-type": "application/json"}


def _stale() -> tuple[str, dict[str, str]]:
    return _event(), _signed(_event(), at=datetime.now(UTC) - timedelta(minutes=10))


def _malformed_signature() -> tuple[str, dict[str, str]]:
    return _event(), {**_signed(_event()), "webhook-signature": "v1"}


@pytest.mark.parametrize(
    ("delivery", "reason"),
    [
        (_tampered, "no matching signature found"),
        (_wrong_secret, "no matching signature found"),
        (_unsigned, "missing required headers"),
        (_stale, "message timestamp too old"),
        (_malformed_signature, "malformed body or signature header"),
    ],
)
def test_what_is_not_signed_with_the_secret_is_refused_and_not_recorded(
    receiver: Receiver, delivery: Delivery, reason: str
) -> None:
    body, headers = delivery()
    answer = receiver.post(body, headers)
    assert answer.status_code == 401
    assert answer.json() == {"error": reason}
    assert receiver.lines() == [f"refused: {reason}"]
    assert receiver.summary() == {"received": 0, "unique": 0, "refused": 1, "events": []}
    printed = receiver.out.getvalue()
    for secret in (SECRET, OTHER_SECRET, SECRET.removeprefix("whsec_")):
        assert secret not in printed
    signature = headers.get("webhook-signature", "").removeprefix("v1,")
    assert not signature or signature not in printed


def test_a_signed_body_that_is_not_a_json_object_is_refused(receiver: Receiver) -> None:
    answer = receiver.post("[1, 2]", _signed("[1, 2]"))
    assert answer.status_code == 400
    assert receiver.lines() == ["refused: signed, but the body is not a JSON object"]
    assert receiver.summary()["received"] == 0


def test_the_same_webhook_id_again_is_marked_as_a_repeat(receiver: Receiver) -> None:
    body = _event()
    assert receiver.post(body, _signed(body, "msg_1")).status_code == 204
    assert receiver.post(body, _signed(body, "msg_1")).status_code == 204
    assert receiver.lines() == [
        "webhook link.connected msg_1 link=lnk_1 owner=own_1 institution=FlinksCapital",
        "webhook link.connected msg_1 link=lnk_1 owner=own_1 institution=FlinksCapital (repeat)",
    ]
    summary = receiver.summary()
    assert (summary["received"], summary["unique"], len(summary["events"])) == (2, 1, 1)


def test_a_line_stays_one_line_whatever_the_data(receiver: Receiver) -> None:
    body = json.dumps(
        {"type": "accounts.ready", "timestamp": "t", "data": {"link_id": "a\nb", "accounts": 3}}
    )
    assert receiver.post(body, _signed(body, "msg_9")).status_code == 204
    assert receiver.lines() == ['webhook accounts.ready msg_9 link="a\\nb" accounts=3']


def test_the_last_events_are_kept_oldest_first(receiver: Receiver) -> None:
    for n in range(KEPT_EVENTS + 1):
        body = _event(f"lnk_{n}")
        assert receiver.post(body, _signed(body, f"msg_{n}")).status_code == 204
    summary = receiver.summary()
    assert (summary["received"], summary["unique"]) == (KEPT_EVENTS + 1, KEPT_EVENTS + 1)
    ids = [event["id"] for event in summary["events"]]
    assert ids == [f"msg_{n}" for n in range(1, KEPT_EVENTS + 1)]


def test_the_remembered_ids_are_bounded() -> None:
    recent = RecentIds(3)
    assert [recent.seen(msg_id) for msg_id in ("a", "b", "c", "a", "d")] == [
        False,
        False,
        False,
        True,
        False,
    ]
    # "a" was seen again after "b", so "b" is the one forgotten first.
    assert recent.seen("b") is False
    assert recent.seen("a") is True


def test_an_unusable_secret_is_refused_by_the_factory() -> None:
    with pytest.raises(ValueError, match="BFF_WEBHOOK_SECRET"):
        create_receiver("whsec_" + base64.b64encode(b"short").decode())


@pytest.mark.parametrize(
    "secret", [None, "", "not-whsec", "whsec_%%%", "whsec_" + base64.b64encode(b"short").decode()]
)
def test_the_module_without_a_usable_secret_exits_2_and_says_why(secret: str | None) -> None:
    env = dev_environment()
    if secret is not None:
        env["BFF_WEBHOOK_SECRET"] = secret
    run = subprocess.run(
        [sys.executable, "-m", "app.receiver", "--port", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2
    assert "python -m app.receiver: BFF_WEBHOOK_SECRET" in run.stderr
    assert not secret or secret not in run.stderr + run.stdout


def test_flinks_bff_receiver_runs_it_alone_and_prints_to_stdout() -> None:
    with reserve_port() as port:
        process = subprocess.Popen(  # noqa: S603 - our own command
            [sys.executable, "-m", "app.cli", "receiver", "--port", str(port.port)],
            cwd=ROOT,
            env=dev_environment(BFF_WEBHOOK_SECRET=SECRET),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        with process, httpx.Client(timeout=10) as client:
            try:
                wait_until(
                    lambda: _answers(client, f"{port.url}/webhooks") or process.poll() is not None,
                    what="flinks-bff receiver to answer",
                )
                assert process.poll() is None
                port.release()
                body = _event()
                sent = client.post(f"{port.url}/webhooks", content=body, headers=_signed(body))
                assert sent.status_code == 204
            finally:
                process.terminate()
                stdout, stderr = process.communicate(timeout=30)
    assert stdout.splitlines() == [
        "webhook link.connected msg_1 link=lnk_1 owner=own_1 institution=FlinksCapital"
    ]
    assert SECRET not in stdout + stderr


def _answers(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url).status_code == 200
    except httpx.TransportError:
        return False


def _children(pid: int) -> list[int]:
    return [
        int(child)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    ]


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def test_flinks_bff_dev_runs_the_receiver_and_stops_when_it_dies() -> None:
    with dev_stack() as stack:
        stack.wait_ready()
        banner = "".join(stack.out)
        assert (
            f"  Events   {stack.receiver_url}/webhooks "
            "(development receiver; prints each signed event)"
        ) in banner
        summary = httpx.get(f"{stack.receiver_url}/webhooks", timeout=10)
        assert summary.status_code == 200
        assert summary.json()["received"] == 0
        # The receiver prints where `dev` does (what `make run` shows).
        refused = httpx.post(f"{stack.receiver_url}/webhooks", content="{}", timeout=10)
        assert refused.status_code == 401
        wait_until(
            lambda: "refused: missing required headers\n" in stack.out,
            what="the receiver's line in dev's output",
        )
        receivers = [c for c in _children(stack.process.pid) if "app.receiver" in _cmdline(c)]
        assert len(receivers) == 1
        os.kill(receivers[0], signal.SIGKILL)
        stack.process.wait(timeout=60)
        wait_until(lambda: any("stopping the BFF" in line for line in stack.err), what="why")
    assert stack.process.returncode == 1
    assert "the development receiver stopped; stopping the BFF too" in "".join(stack.err)


def test_make_run_shows_the_event_of_a_link_connected_through_it() -> None:
    """`flinks-bff dev` end to end: a Connect flow through its BFF and sandbox connects, and the
    receiver it runs prints the verified `link.connected` event."""
    with dev_stack() as stack:
        stack.wait_ready()
        with httpx.Client(base_url=stack.bff_url, headers={"Origin": stack.bff_url}) as browser:
            started = browser.post("/v1/connect/sessions", json={}, timeout=30)
            assert started.status_code == 201, started.text
            flow_id = started.json()["flow_id"]
            issued = httpx.post(
                f"{stack.sandbox_url}/__sandbox/logins",
                json={"username": "greatday_nomfa"},
                timeout=30,
            )
            login_id = issued.json()["login_id"]
            completed = browser.post(
                f"/v1/connect/sessions/{flow_id}/complete",
                json={"login_id": login_id, "institution": "FlinksCapital"},
                timeout=30,
            )
            assert completed.json()["status"] == "connected", completed.text
            link_id = completed.json()["link_id"]
        wait_until(
            lambda: any(
                line.startswith("webhook link.connected msg_") and f"link={link_id}" in line
                for line in stack.out
            ),
            what="the receiver's link.connected line in dev's output",
        )
        assert not any("refused" in line for line in stack.out)
        assert login_id not in "".join(stack.out)
