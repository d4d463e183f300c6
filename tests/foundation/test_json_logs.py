"""JSON log lines are scrubbed field by field: no text in a line keeps a secret's shape, wherever
in the record it came from."""

from __future__ import annotations

import io
import json
import logging
import uuid
from typing import Any

from app.observability import _SCRUB, REDACTED, configure_logging, register_secret, request_id_var

LOGIN_ID = str(uuid.UUID(int=0x8BC46F8D75066153FFFB5E5FDB212783))
STATE = "s" * 20 + "-" + "t" * 22  # 43 url-safe characters: the shape of an OAuth state
SECRET = 'json-canary "secret" 7c1d'  # registered: found even where JSON would escape it


class _Opaque:
    """Not JSON: logged as its str()."""

    def __str__(self) -> str:
        return f"<flow login={LOGIN_ID}>"


def _line(extra: dict[str, Any], message: str = "flow.updated", *args: object) -> dict[str, Any]:
    stream = io.StringIO()
    configure_logging("INFO", stream)
    logging.getLogger("app.flows").info(message, *args, extra=extra)
    text = stream.getvalue()
    assert _SCRUB.search(text) is None, text
    assert "json-canary" not in text, text
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def test_every_text_in_a_line_is_scrubbed_wherever_it_sits() -> None:
    register_secret(SECRET)
    line = _line(
        {
            "detail": f"loginId={LOGIN_ID}",
            "nested": {LOGIN_ID: "as a key", "list": [STATE, f"x{SECRET}x", 3]},
            "opaque": _Opaque(),
            "items": (STATE,),
        },
        "flow %s ended",
        LOGIN_ID,
    )
    assert line["event"] == f"flow {REDACTED} ended"
    assert line["detail"] == f"loginId={REDACTED}"
    assert line["nested"] == {REDACTED: "as a key", "list": [REDACTED, f"x{REDACTED}x", 3]}
    assert line["opaque"] == f"<flow login={REDACTED}>"
    assert line["items"] == [REDACTED]


def test_fields_named_like_secrets_are_hidden_and_plain_values_kept() -> None:
    line = _line(
        {
            "token": "short",
            "login_id": "short",
            "nested": {"password": 1, "count": 2},
            "status": 200,
            "ok": True,
            "error": None,
            "duration_ms": 0.8,
            "flow_id": "x1dCcCNd_9Lvn1D_PRFmKw",  # 22 characters: ours, not scrubbed
        }
    )
    assert line["token"] == line["login_id"] == REDACTED
    assert line["nested"] == {"password": REDACTED, "count": 2}
    plain = (line["status"], line["ok"], line["error"], line["duration_ms"])
    assert plain == (200, True, None, 0.8)
    assert line["flow_id"] == "x1dCcCNd_9Lvn1D_PRFmKw"


def test_a_caller_s_request_id_of_a_secret_s_shape_is_scrubbed() -> None:
    reset = request_id_var.set(LOGIN_ID)  # X-Request-ID is the caller's, within its charset
    try:
        line = _line({})
    finally:
        request_id_var.reset(reset)
    assert line["request_id"] == REDACTED


def _fail() -> None:
    raise ValueError(LOGIN_ID)


def test_an_exception_s_frames_are_scrubbed() -> None:
    stream = io.StringIO()
    configure_logging("INFO", stream)
    try:
        _fail()
    except ValueError:
        logging.getLogger("app.flows").exception("flow.crashed", extra={"at": LOGIN_ID})
    line = json.loads(stream.getvalue())
    assert line["exc_type"] == "ValueError"
    assert LOGIN_ID not in stream.getvalue()
    assert line["at"] == REDACTED
