"""JSON logs with request ids and redaction, the access log, and Prometheus metrics.

Redaction works in two layers: fields whose names look secret are replaced, and every rendered
line is scrubbed of values shaped like Flinks identifiers (UUIDs: tokens, loginIds, RequestIds,
keys) and of long url-safe random strings (OAuth state, session cookies), plus any value
registered with `register_secret`. Our own request ids are 32-char hex and flow ids 22 chars,
so neither is caught by the scrub.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import secrets
import sys
import time
import traceback
from collections.abc import Iterable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

REDACTED: Final = "[redacted]"
_SENSITIVE_KEY = re.compile(
    r"secret|token|password|passwd|api_?key|auth|cookie|session|login_?id|^state$|"
    r"flinks_request_id|^requestid$|security_?responses|answer",
    re.IGNORECASE,
)
_SCRUB = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{40,}(?![A-Za-z0-9_-])"
)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
_registered_secrets: set[str] = set()

# Attributes every LogRecord has; anything else came in through `extra=`.
_RECORD_ATTRS: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


def register_secret(value: str | None) -> None:
    """Scrub this exact value from every log line (configured keys and secrets)."""
    if value and len(value) >= 6:
        _registered_secrets.add(value)


# The shortest text `_SCRUB` can match (a UUID); shorter text skips the regex.
_SHORTEST_SHAPE: Final = 36


def scrub(text: str) -> str:
    for value in _registered_secrets:
        if value in text:
            text = text.replace(value, REDACTED)
    return _SCRUB.sub(REDACTED, text) if len(text) >= _SHORTEST_SHAPE else text


@functools.lru_cache(maxsize=1024)  # bounded: nested dicts' keys may come from data
def _sensitive(key: str) -> bool:
    return key != "request_id" and _SENSITIVE_KEY.search(key) is not None


def _redact(key: str, value: Any) -> Any:
    """A field as logged: hidden under a secret-looking name, else every text in it scrubbed.
    Scrubbing each text rather than the rendered line is the same (JSON's quotes, colons and
    commas end every run `_SCRUB` looks for) at a fraction of the cost; anything that is not
    JSON already is logged as its str(), scrubbed too."""
    if _sensitive(key):
        return REDACTED
    if isinstance(value, str):
        return scrub(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, dict):
        return {scrub(str(k)): _redact(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact(key, v) for v in value]
    return scrub(str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, event, request_id, and the `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(self.entry(record), ensure_ascii=False)

    def entry(self, record: logging.LogRecord) -> dict[str, Any]:
        """Every text in it scrubbed (`_redact`)."""
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": scrub(record.name),
            "event": scrub(record.getMessage()),
        }
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        if request_id:
            entry["request_id"] = scrub(request_id)
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRS and key != "request_id":
                entry[scrub(key)] = _redact(key, value)
        if record.exc_info and record.exc_info[0] is not None:
            # The type and the frames, never the exception's message: it may quote a value.
            entry["exc_type"] = record.exc_info[0].__name__
            entry["stack"] = scrub(self.formatStack(_frames(record.exc_info[2])))
        # uvicorn's copy of the event with terminal colour codes: the event itself is enough.
        entry.pop("color_message", None)
        return entry


class ConsoleFormatter(JsonFormatter):
    """The same fields as one aligned, readable line, for a developer's terminal:
    `12:03:04.567 WARNING app.main          encryption_key.ephemeral  meaning=...`."""

    def format(self, record: logging.LogRecord) -> str:
        entry = self.entry(record)
        ts = datetime.fromtimestamp(record.created).strftime("%H:%M:%S.%f")[:-3]
        head = f"{ts} {entry.pop('level').upper():<7} {entry.pop('logger'):<18} "
        head += f"{entry.pop('event'):<26}"
        entry.pop("ts", None)
        stack = entry.pop("stack", None)
        fields = " ".join(f"{key}={_console_value(value)}" for key, value in entry.items())
        line = f"{head} {fields}".rstrip()
        if stack:
            line += "\n" + stack.rstrip()
        return scrub(line)


def _console_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return json.dumps(text, ensure_ascii=False) if (" " in text or not text) else text


def _frames(tb: Any) -> str:
    return "".join(traceback.format_tb(tb))


# httpx logs each request's full URL (OAuth state, query strings) and httpcore logs headers
# (flinks-auth-key) and response headers; aiohttp's client may quote a URL in a warning.
# Their records keep only the logger's own event name.
_HTTP_CLIENT_LOGGERS = (
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
    "aiohttp.client",
    "aiohttp.internal",
)


_EVENT_NAME = re.compile(r"[a-z_][a-z0-9_.]*")


class _EventOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        first = str(record.msg).split(" ", 1)[0]
        event = first if _EVENT_NAME.fullmatch(first) else "request"
        record.msg = f"{record.name}.{event}"
        record.args = None
        return True


_EVENT_ONLY = _EventOnly()


def configure_logging(level: str = "INFO", stream: Any = None, *, console: bool = False) -> None:
    """JSON lines (what log pipelines read), or readable lines for a terminal (`console`)."""
    # What no line of ours prints, not gathered for every record (the logging HOWTO's
    # "Optimization"): 6 us of a line's 43 here.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging._srcfile = None  # the documented switch for caller lookups
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(ConsoleFormatter() if console else JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_flinks_bff", False):
            root.removeHandler(old)
    handler._flinks_bff = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    # uvicorn's own access log prints the query string; ours (AccessLogMiddleware) does not.
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.disabled = True
    for name in _HTTP_CLIENT_LOGGERS:
        logger = logging.getLogger(name)
        if _EVENT_ONLY not in logger.filters:
            logger.addFilter(_EVENT_ONLY)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    logging.getLogger("aiohttp").setLevel(logging.WARNING)


def new_request_id(incoming: str | None) -> str:
    if incoming and _REQUEST_ID.fullmatch(incoming):
        return incoming
    return secrets.token_hex(16)


class BreakerReadings(Protocol):
    """What the metrics read from the Flinks client's circuit breaker, when scraped."""

    @property
    def state(self) -> str: ...

    @property
    def refused(self) -> int: ...


_BREAKER_STATES: Final = {"closed": 0, "open": 1, "half_open": 2}


class _BreakerCollector(Collector):
    """Reads the breaker at collection time, so the Flinks client knows nothing of Prometheus."""

    def __init__(self) -> None:
        self.breaker: BreakerReadings | None = None

    def collect(self) -> Iterable[Metric]:
        breaker = self.breaker
        if breaker is None:  # Flinks is not configured
            return []
        return [
            GaugeMetricFamily(
                "flinks_breaker_state",
                "The Flinks circuit breaker: 0 closed, 1 open, 2 half-open (one probe allowed).",
                value=_BREAKER_STATES[str(breaker.state)],
            ),
            CounterMetricFamily(
                "flinks_breaker_refused",
                "Flinks calls refused unsent: the circuit was open, or its one probe was out.",
                value=breaker.refused,
            ),
        ]


class Metrics:
    """Per-app registry, so several apps in one process (tests) do not collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency by route template and method.",
            ["route", "method"],
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self._breaker = _BreakerCollector()
        self.registry.register(self._breaker)

    def watch_flinks_breaker(self, breaker: BreakerReadings | None) -> None:
        """Export this breaker's state (the latest one given: a lifespan may run again)."""
        self._breaker.breaker = breaker


access_log = logging.getLogger("app.access")


def _route_template(scope: Scope) -> str:
    """The matched route's path template; FastAPI sets scope["route"] for its own routes only."""
    route = scope.get("route")
    if route is not None:
        return str(route.path)
    endpoint = scope.get("endpoint")
    if endpoint is not None:
        for candidate in getattr(scope.get("app"), "routes", ()):
            if endpoint in (getattr(candidate, "endpoint", None), getattr(candidate, "app", None)):
                return str(candidate.path)
        return "other"
    return "unmatched"


class RequestContextMiddleware:
    """Request id in, request id out; one access-log line and metrics per request.

    The access line names the route template (or "unmatched"), never the raw path or query,
    so no identifier a client put in a URL reaches the log.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, skip_paths: Iterable[str] = ()) -> None:
        self.app = app
        self.metrics = metrics
        self.skip_paths = frozenset(skip_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = new_request_id(incoming)
        token = request_id_var.set(request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"].append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_template(scope)
            method = scope["method"]
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.latency.labels(route, method).observe(elapsed)
            if route not in self.skip_paths:
                access_log.info(
                    "http.request",
                    extra={
                        "method": method,
                        "route": route,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 2),
                    },
                )
            request_id_var.reset(token)
