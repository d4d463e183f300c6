"""Development logs read as aligned lines in a terminal; production logs stay JSON."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from app.observability import configure_logging, register_secret
from app.settings import load_settings


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_console_lines_are_readable_and_still_scrubbed(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("INFO", stream, console=True)
    register_secret("console-canary-secret-9f2e")
    log = logging.getLogger("app.main")
    log.warning("encryption_key.ephemeral", extra={"meaning": "a key that lives in this process"})
    log.info("flinks.call", extra={"status": 200, "token": "console-canary-secret-9f2e"})
    # uvicorn's records carry a coloured copy of the event; the line must not.
    log.info("Started", extra={"color_message": "\x1b[36mStarted\x1b[0m"})
    first, second, third = stream.getvalue().splitlines()
    assert first.split()[1:4] == ["WARNING", "app.main", "encryption_key.ephemeral"]
    assert 'meaning="a key that lives in this process"' in first
    assert "status=200" in second
    assert "console-canary-secret-9f2e" not in stream.getvalue()
    assert "\x1b" not in third  # no terminal colour codes
    assert not first.startswith("{")


def test_json_is_the_default(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("INFO", stream)
    logging.getLogger("app.main").info("app.started", extra={"env": "production"})
    assert json.loads(stream.getvalue())["event"] == "app.started"
    assert load_settings(_env_file=None).bff_log_format == "json"
