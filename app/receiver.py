"""A development receiver for the BFF's events out: it verifies each delivery's Standard Webhooks
signature and prints one line per event. `flinks-bff dev` runs it; `flinks-bff receiver` (or
`python -m app.receiver`) runs it alone, with the secret from BFF_WEBHOOK_SECRET.

It shares no code with the BFF: it checks what the BFF sends as a host backend would.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import sys
from collections import OrderedDict, deque
from collections.abc import Sequence
from typing import Any, TextIO

import uvicorn
from standardwebhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

SECRET_ENV = "BFF_WEBHOOK_SECRET"  # noqa: S105 - the variable's name
PORT_ENV = "RECEIVER_PORT"
DEFAULT_PORT = 8002
REMEMBERED_IDS = 10_000
KEPT_EVENTS = 200
MAX_BODY_BYTES = 1024 * 1024
MIN_KEY_BYTES = 24
_SHOWN_CHARS = 120
_LABELS = {"link_id": "link", "owner": "owner", "institution": "institution"}
_MAKE_ONE = (
    "make one with: python -c 'import secrets,base64;"
    'print("whsec_"+base64.b64encode(secrets.token_bytes(32)).decode())\''
)


def secret_problem(secret: str) -> str | None:
    """What is wrong with `secret` as a Standard Webhooks secret (never the secret itself)."""
    if not secret:
        return f"{SECRET_ENV} is not set (the secret the BFF signs its events with)"
    if not secret.startswith("whsec_"):
        return f"{SECRET_ENV} must start with whsec_"
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        return f"{SECRET_ENV} must be whsec_ followed by a base64 key"
    if len(key) < MIN_KEY_BYTES:
        return f"{SECRET_ENV}'s key must be {MIN_KEY_BYTES} bytes or more"
    return None


class RecentIds:
    """The last `capacity` ids seen (a repeat counts as seen again); older ones are forgotten."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def seen(self, msg_id: str) -> bool:
        """Remembers `msg_id`; whether it was remembered already."""
        repeat = msg_id in self._ids
        self._ids[msg_id] = None
        self._ids.move_to_end(msg_id)
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
        return repeat


def _shown(value: object) -> str:
    """A value as one short, printable token: plain text as is, anything else as ASCII JSON."""
    text = value if isinstance(value, str) else None
    if text is None or not text or not text.isprintable() or not text.isascii() or " " in text:
        text = json.dumps(value, ensure_ascii=True, separators=(",", ":"))
    if len(text) > _SHOWN_CHARS:
        text = text[: _SHOWN_CHARS - 3] + "..."
    return text


def event_line(msg_id: str, event: dict[str, Any], *, repeat: bool) -> str:
    kind = event.get("type")
    parts = ["webhook", _shown(kind) if kind is not None else "?", _shown(msg_id)]
    data = event.get("data")
    if isinstance(data, dict):
        known = [key for key in _LABELS if key in data]
        parts += [f"{_LABELS[key]}={_shown(data[key])}" for key in known]
        parts += [f"{_shown(key)}={_shown(v)}" for key, v in data.items() if key not in _LABELS]
    if repeat:
        parts.append("(repeat)")
    return " ".join(parts)


class _Receiver:
    def __init__(self, secret: str, out: TextIO | None) -> None:
        problem = secret_problem(secret)
        if problem:
            raise ValueError(problem)
        self.webhook = Webhook(secret)
        self.out = out
        self.received = 0
        self.unique = 0
        self.refused = 0
        self.ids = RecentIds(REMEMBERED_IDS)
        self.events: deque[dict[str, Any]] = deque(maxlen=KEPT_EVENTS)

    def _print(self, line: str) -> None:
        print(line, file=self.out or sys.stdout, flush=True)

    def _refuse(self, status: int, reason: str) -> Response:
        self.refused += 1
        self._print(f"refused: {reason}")
        return JSONResponse({"error": reason}, status_code=status)

    async def receive(self, request: Request) -> Response:
        body = await _read_body(request)
        if body is None:
            return self._refuse(413, f"body larger than {MAX_BODY_BYTES} bytes")
        try:
            text = body.decode("utf-8")
            self.webhook.verify(text, dict(request.headers), json_parse=False)
        except WebhookVerificationError as exc:
            reason = str(exc)
            return self._refuse(401, reason[:1].lower() + reason[1:])
        except ValueError:  # a body that is not UTF-8, a signature that is not `v1,<base64>`
            return self._refuse(401, "malformed body or signature header")
        try:
            event = json.loads(text)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            return self._refuse(400, "signed, but the body is not a JSON object")
        msg_id = request.headers["webhook-id"]
        repeat = self.ids.seen(msg_id)
        self.received += 1
        if not repeat:
            self.unique += 1
            self.events.append(
                {
                    "id": msg_id,
                    "type": event.get("type"),
                    "timestamp": event.get("timestamp"),
                    "data": event.get("data"),
                }
            )
        self._print(event_line(msg_id, event, repeat=repeat))
        return Response(status_code=204)

    async def summary(self, request: Request) -> Response:
        return JSONResponse(
            {
                "received": self.received,
                "unique": self.unique,
                "refused": self.refused,
                "events": list(self.events),
            }
        )


async def _read_body(request: Request) -> bytes | None:
    """The body, or None once it grows past MAX_BODY_BYTES."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            return None
    return bytes(body)


def create_receiver(secret: str, *, out: TextIO | None = None) -> Starlette:
    """POST /webhooks verifies and prints an event; GET /webhooks says what arrived. Lines go to
    `out` (stdout if None). Raises ValueError if `secret` is not a usable `whsec_` secret."""
    receiver = _Receiver(secret, out)
    return Starlette(
        routes=[
            Route("/webhooks", receiver.receive, methods=["POST"]),
            Route("/webhooks", receiver.summary, methods=["GET"]),
        ]
    )


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m app.receiver") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help=f"port (env {PORT_ENV}, default {DEFAULT_PORT})")
    args = parser.parse_args(argv)
    problem = secret_problem(os.environ.get(SECRET_ENV, ""))
    if problem:
        print(f"{prog}: {problem}; {_MAKE_ONE}", file=sys.stderr)  # noqa: T201
        return 2
    port = args.port
    if port is None:
        try:
            port = int(os.environ.get(PORT_ENV, DEFAULT_PORT))
        except ValueError:
            print(f"{prog}: {PORT_ENV} must be a port number", file=sys.stderr)  # noqa: T201
            return 2
    app = create_receiver(os.environ[SECRET_ENV])
    uvicorn.run(app, host=args.host, port=port, log_level="warning", access_log=False, ws="none")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
