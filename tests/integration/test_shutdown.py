"""Graceful shutdown of a real `flinks-bff serve` process on SIGTERM."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
from urllib.parse import parse_qs, urlsplit

import httpx

from app.main import create_app
from app.settings import Settings
from tests.conftest import serve_in_process
from tests.integration.conftest import ANSWERS, PASSWORD, Sandbox
from tests.integration.servers import READY_TIMEOUT
from tests.ports import reserve_port
from tests.sandbox.server import SandboxHandle
from tests.waiting import scaled, wait_until, wait_until_async


async def test_readiness_turns_503_on_sigterm_and_the_server_still_hears_it(
    settings: Settings,
) -> None:
    heard: list[int] = []
    # Stands in for the server's own SIGTERM handler (uvicorn's), which the app chains to; it
    # also keeps the signal from ending this test process.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: heard.append(signum))
    try:
        async with serve_in_process(create_app(settings)) as client:
            assert (await client.get("/readyz")).status_code == 200
            os.kill(os.getpid(), signal.SIGTERM)

            async def draining() -> bool:
                return (await client.get("/readyz")).status_code == 503

            await wait_until_async(draining, what="/readyz to answer 503 after SIGTERM")
            response = await client.get("/readyz")
            assert response.json()["code"] == "shutting_down"
            assert (await client.get("/livez")).status_code == 200
        assert heard == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)


def _mints(bank: httpx.Client) -> int:
    return len(bank.get("/__sandbox/calls", params={"endpoint": "GenerateAuthorizeToken"}).json())


def _authorize_in_flight(bank: httpx.Client, mints_before: int) -> bool:
    """True while the sandbox serves the /Authorize call: the fresh token for it was minted (that
    call has ended) and a call has started that has not ended (the sandbox counts calls as they
    start and records them as they end)."""
    minted = _mints(bank) > mints_before
    counts = bank.get("/__sandbox/state").json()
    return minted and counts["calls_total"] > counts["calls"]


def test_sigterm_lets_the_request_in_flight_finish_then_closes_everything(
    sandbox_handle: SandboxHandle, redis_url: str, sandbox: Sandbox
) -> None:
    reservation = reserve_port()
    port, base = reservation.port, reservation.url
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BFF_", "FLINKS_"))}
    env |= {
        "REDIS_URL": redis_url,
        "FLINKS_API_URL": sandbox_handle.base_url,
        "FLINKS_CONNECT_URL": f"{sandbox_handle.base_url}/v2/",
        "FLINKS_CUSTOMER_ID": sandbox_handle.customer_id,
        "FLINKS_SECRET_KEY": sandbox_handle.settings.secret_key,
        "BFF_ENCRYPTION_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "BFF_LOG_LEVEL": "INFO",
    }
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        with httpx.Client(timeout=5) as probe:

            def ready() -> bool:
                assert process.poll() is None, f"flinks-bff exited with {process.returncode}"
                with contextlib.suppress(httpx.TransportError):
                    return probe.get(f"{base}/readyz").status_code == 200
                return False

            wait_until(ready, what=f"flinks-bff serve on {base} to be ready", timeout=READY_TIMEOUT)
        reservation.release()

        with (
            httpx.Client(base_url=base, timeout=30) as browser,
            httpx.Client(base_url=sandbox_handle.base_url) as bank,
        ):
            started = browser.post("/v1/connect/sessions", json={}).json()
            token = parse_qs(urlsplit(started["iframe_url"]).query)["authorizeToken"][0]
            login_id = bank.post(
                "/__sandbox/connect/complete",
                json={
                    "authorize_token": token,
                    "username": "greatday_nomfa",
                    "password": PASSWORD,
                    "answers": ANSWERS,
                },
            ).json()["login_id"]
            slow = {"latency_ms": 2500, "endpoints": ["Authorize"]}
            assert bank.put("/__sandbox/faults", json=slow).status_code == 200
            result: dict[str, httpx.Response] = {}

            def complete() -> None:
                result["response"] = browser.post(
                    f"/v1/connect/sessions/{started['flow_id']}/complete",
                    json={"login_id": login_id},
                )

            mints_before = _mints(bank)
            in_flight = threading.Thread(target=complete)
            in_flight.start()
            wait_until(
                lambda: _authorize_in_flight(bank, mints_before),
                what="the BFF's /Authorize call to reach the sandbox",
            )
            process.send_signal(signal.SIGTERM)
            in_flight.join(timeout=scaled(30))
            bank.delete("/__sandbox/faults")

        response = result["response"]
        assert response.status_code == 200
        assert response.json()["status"] == "connected"
        # uvicorn re-raises the captured SIGTERM once it has shut down cleanly.
        assert process.wait(timeout=scaled(30)) in (0, -signal.SIGTERM)
        with_new_connection = None
        with contextlib.suppress(httpx.TransportError):
            with_new_connection = httpx.get(f"{base}/livez", timeout=1)
        assert with_new_connection is None  # the listener is gone
    finally:
        reservation.release()
        if process.poll() is None:
            process.kill()
        output, _ = process.communicate(timeout=scaled(10))
        sys.stdout.write(output)  # shown by pytest if the test fails
    events = [json.loads(line)["event"] for line in output.splitlines() if line.startswith("{")]
    assert "app.draining" in events
    draining = events.index("app.draining")
    assert "http.request" in events[draining:]  # the in-flight request ended after SIGTERM
    assert events.index("app.stopping") > draining
    assert events.index("app.stopped") > events.index("app.stopping")  # clients closed
