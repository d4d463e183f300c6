"""The `flinks-bff` command: serve (production), dev (all local), sandbox (Flinks emulator),
receiver (a development receiver for the BFF's events out)."""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any

import httpx
import uvicorn

from app.embedded_redis import EmbeddedRedis
from app.http_server import EdgeHttpProtocol
from app.settings import ConfigurationError, Settings, load_settings

# Flinks' public Toolbox credentials (flinks-contract.md 1.2): the sandbox's defaults.
TOOLBOX_CUSTOMER_ID = "43387ca6-0391-4c82-857d-70d95f087ecb"
TOOLBOX_SECRET_KEY = "c4569c54-e167-4d34-8de6-f4113bc82414"  # noqa: S105 - public test value
TOOLBOX_API_KEY = "3d5266a8-b697-48d4-8de6-52e2e2662acc"
CHILD_START_TIMEOUT = 20.0
DEFAULT_SANDBOX_PORT = 8001
DEFAULT_RECEIVER_PORT = 8002
SUPERVISE_INTERVAL = 0.5


def _uvicorn_options(settings: Settings, *, workers: int) -> dict[str, Any]:
    return {
        "app": "app.main:create_app_from_env",
        "factory": True,
        "host": settings.bff_host,
        "port": settings.bff_port,
        "workers": workers,
        # uvicorn's httptools protocol with header limits and a request read timeout; each
        # worker reads them from the environment (BFF_MAX_HEADER_BYTES, ...).
        "http": EdgeHttpProtocol,
        "ws": "none",  # no WebSocket routes: an upgrade is not offered at all
        "access_log": False,  # ours never prints query strings
        "log_config": None,  # logging is configured by create_app_from_env
        "server_header": False,
        "proxy_headers": False,  # X-Forwarded-For is trusted only from BFF_TRUSTED_PROXIES
        "timeout_graceful_shutdown": 30,
    }


def _uvicorn(settings: Settings, *, workers: int) -> None:
    uvicorn.run(**_uvicorn_options(settings, workers=workers))


def _settings_or_exit(**overrides: object) -> Settings:
    try:
        return load_settings(**overrides)
    except ConfigurationError as exc:
        print(exc.report(), file=sys.stderr)  # noqa: T201
        raise SystemExit(2) from None


def _export(**values: object) -> None:
    """Flags become environment, so uvicorn's worker processes see the same settings."""
    for name, value in values.items():
        if value is not None:
            os.environ[name] = str(value)


def serve(args: argparse.Namespace) -> int:
    _export(BFF_HOST=args.host, BFF_PORT=args.port, BFF_WORKERS=args.workers)
    settings = _settings_or_exit()
    _uvicorn(settings, workers=settings.bff_workers)
    return 0


@dataclass(frozen=True, slots=True)
class _Child:
    """A development piece `dev` runs as a process: its base URL and the process."""

    url: str
    process: subprocess.Popen[bytes]

    def alive(self) -> bool:
        return self.process.poll() is None


@contextmanager
def _child_process(
    what: str, module: str, port: int, probe_path: str, env: dict[str, str]
) -> Iterator[_Child]:
    """`python -m <module>` on 127.0.0.1:<port> with `env` added, once it answers on
    `probe_path`; stopped on exit. Its output goes where ours does."""
    base_url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
        [sys.executable, "-m", module, "--host", "127.0.0.1", "--port", str(port)],
        env={**os.environ, **env},
    )
    try:
        deadline = time.monotonic() + CHILD_START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise SystemExit(f"flinks-bff: {what} exited (code {process.returncode})")
            try:
                httpx.get(f"{base_url}{probe_path}", timeout=0.5)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"flinks-bff: {what} did not start") from None
                time.sleep(0.1)
        yield _Child(base_url, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()


def _sandbox_process(
    port: int, redirect_uri: str, extra: dict[str, str] | None = None
) -> AbstractContextManager[_Child]:
    env = {"SANDBOX_REDIRECT_URIS": redirect_uri, **(extra or {})}
    return _child_process("the Flinks sandbox", "app.sandbox", port, "/v2/", env)


def _receiver_process(port: int, secret: str) -> AbstractContextManager[_Child]:
    env = {"BFF_WEBHOOK_SECRET": secret}
    return _child_process("the development receiver", "app.receiver", port, "/webhooks", env)


def _dev_webhooks(settings: Settings, public_url: str) -> dict[str, str]:
    """Unless told otherwise (FLINKS_WEBHOOKS set), the sandbox posts its webhooks to this BFF,
    signed with a secret drawn for this run: the sandbox's settings, the BFF's exported."""
    if "flinks_webhooks" in settings.model_fields_set:
        return {}
    secret = secrets.token_urlsafe(32)
    _export(FLINKS_WEBHOOKS="true", FLINKS_WEBHOOK_SECRET=secret)
    return {
        "SANDBOX_WEBHOOK_URL": f"{public_url}/v1/webhooks/flinks",
        "SANDBOX_WEBHOOK_SECRET": secret,
        "SANDBOX_WEBHOOK_HEADER": settings.flinks_webhook_header,
    }


def _dev_events_secret() -> str:
    """A Standard Webhooks secret for this run: the receiver verifies what the BFF signs."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _local_urls(settings: Settings) -> dict[str, str]:
    """Without a configured public URL, development serves and returns to where it listens."""
    if "BFF_PUBLIC_URL" in os.environ:
        return {}
    host, port = settings.bff_host, settings.bff_port
    hosts = ["127.0.0.1", "localhost"] if host in ("127.0.0.1", "localhost") else [host]
    bases = [f"http://{name}:{port}" for name in hosts]
    return {
        "BFF_PUBLIC_URL": bases[0],
        "BFF_RETURN_URLS": os.environ.get("BFF_RETURN_URLS") or ",".join(f"{b}/" for b in bases),
        "BFF_CORS_ORIGINS": os.environ.get("BFF_CORS_ORIGINS") or ",".join(bases),
    }


def _busy_ports(host: str, ports: dict[str, int]) -> list[str]:
    """The ports of `ports` ({what: port}) that something else already listens on."""
    busy = []
    for what, port in ports.items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError:
                busy.append(f"port {port} ({what}) is already in use")
    return busy


class _Supervisor:
    """Runs uvicorn for `dev` and watches what it depends on: a sandbox or embedded Redis that
    dies stops the server with the reason, and the banner is printed once /readyz says 200."""

    def __init__(self, server: uvicorn.Server, health_url: str, banner: str) -> None:
        self.server = server
        self.health_url = health_url
        self.banner = banner
        self.checks: list[tuple[str, Callable[[], bool]]] = []
        self.failure: str | None = None

    def watch(self, what: str, alive: Callable[[], bool]) -> None:
        self.checks.append((what, alive))

    def _loop(self) -> None:
        announced = False
        while not self.server.should_exit:
            for what, alive in self.checks:
                if not alive():
                    self.failure = f"flinks-bff: {what} stopped; stopping the BFF too"
                    self.server.should_exit = True
                    return
            if not announced and self._ready():
                print(self.banner, flush=True)  # noqa: T201
                announced = True
            time.sleep(SUPERVISE_INTERVAL)

    def _ready(self) -> bool:
        try:
            return httpx.get(self.health_url, timeout=1.0).status_code == 200
        except httpx.TransportError:
            return False

    def run(self) -> int:
        watcher = threading.Thread(target=self._loop, name="dev-supervisor", daemon=True)
        watcher.start()
        self.server.run()
        self.server.should_exit = True
        watcher.join(timeout=5)
        if self.failure:
            print(self.failure, file=sys.stderr)  # noqa: T201
            return 1
        return 0


def dev(args: argparse.Namespace) -> int:
    """Settings are read once; what development adds (local URLs, the embedded Redis, the
    sandbox, the events receiver) is handed to the server as environment, which its app
    factory reads."""
    _export(BFF_HOST=args.host, BFF_PORT=args.port, BFF_WORKERS=1)
    settings = _settings_or_exit()
    if "bff_log_format" not in settings.model_fields_set:
        _export(BFF_LOG_FORMAT="console")  # a terminal's readable lines, unless told otherwise
    if settings.is_production:
        print("flinks-bff: `dev` is for development; use `flinks-bff serve`", file=sys.stderr)  # noqa: T201
        return 2
    sandbox_port = args.sandbox_port or int(os.environ.get("SANDBOX_PORT", DEFAULT_SANDBOX_PORT))
    receiver_port = int(os.environ.get("RECEIVER_PORT", DEFAULT_RECEIVER_PORT))
    # Unless told where (BFF_WEBHOOK_URL), the BFF's events go to a receiver that prints them.
    run_receiver = "bff_webhook_url" not in settings.model_fields_set
    ports = {"the BFF, BFF_PORT": settings.bff_port}
    if not settings.flinks_configured:
        ports["the Flinks sandbox, SANDBOX_PORT"] = sandbox_port
    if run_receiver:
        ports["the development receiver, RECEIVER_PORT"] = receiver_port
    busy = _busy_ports(settings.bff_host, ports)
    if busy:
        print("flinks-bff: cannot start: " + "; ".join(busy), file=sys.stderr)  # noqa: T201
        return 2
    local = _local_urls(settings)
    public_url = local.get("BFF_PUBLIC_URL") or str(settings.bff_public_url).rstrip("/")
    _export(**local)
    # uvicorn re-raises SIGTERM after its own shutdown; exiting through SystemExit instead of
    # dying on the signal lets the stack below stop the sandbox and the embedded Redis.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    base = f"http://{settings.bff_host}:{settings.bff_port}"
    with ExitStack() as stack:
        notes = []
        watched: list[tuple[str, Callable[[], bool]]] = []
        if settings.redis_url is None:
            embedded = stack.enter_context(EmbeddedRedis())
            _export(REDIS_URL=embedded.url)
            watched.append(("the embedded Redis", embedded.is_running))
            notes.append(f"  Redis    {embedded.url} (embedded Valkey; gone when this stops)")
        else:
            notes.append("  Redis    REDIS_URL from your environment")
        if not settings.flinks_configured:
            hooks = _dev_webhooks(settings, public_url)
            sandbox = stack.enter_context(
                _sandbox_process(sandbox_port, f"{public_url}/v1/oauth/callback", hooks)
            )
            watched.append(("the Flinks sandbox", sandbox.alive))
            _export(
                FLINKS_API_URL=sandbox.url,
                FLINKS_CONNECT_URL=f"{sandbox.url}/v2/",
                FLINKS_CUSTOMER_ID=TOOLBOX_CUSTOMER_ID,
                FLINKS_SECRET_KEY=TOOLBOX_SECRET_KEY,
                FLINKS_API_KEY=TOOLBOX_API_KEY,
                FLINKS_DEMO="true",
                FLINKS_INSTITUTIONS="FlinksCapital",
            )
            notes.append(f"  Flinks   {sandbox.url} (local sandbox; Connect page at /v2/)")
            notes.append("  Bank     Flinks Capital: Greatday / Everyday (MFA) or greatday_nomfa")
            notes.append("           MFA answers: Montreal, Canada, Triangle")
            if hooks:
                notes.append("  Webhooks the sandbox signs and posts them to /v1/webhooks/flinks")
        else:
            notes.append(f"  Flinks   {settings.flinks_base_url}")
        if run_receiver:
            secret = _dev_events_secret()
            receiver = stack.enter_context(_receiver_process(receiver_port, secret))
            watched.append(("the development receiver", receiver.alive))
            _export(BFF_WEBHOOK_URL=f"{receiver.url}/webhooks", BFF_WEBHOOK_SECRET=secret)
            notes.append(
                f"  Events   {receiver.url}/webhooks "
                "(development receiver; prints each signed event)"
            )
        else:
            notes.append("  Events   BFF_WEBHOOK_URL from your environment")
        banner = (
            "\nflinks-bff (development) is ready\n"
            f"  Demo     {base}/\n"
            f"  API docs {base}/docs\n"
            f"  Health   {base}/readyz\n" + "\n".join(notes) + "\n"
        )
        server = uvicorn.Server(uvicorn.Config(**_uvicorn_options(settings, workers=1)))
        supervisor = _Supervisor(server, f"{base}/readyz", banner)
        for what, alive in watched:
            supervisor.watch(what, alive)
        return supervisor.run()


def sandbox(argv: Sequence[str]) -> int:
    from app.sandbox.cli import main as sandbox_main

    return sandbox_main(list(argv))


def receiver(argv: Sequence[str]) -> int:
    from app.receiver import main as receiver_main

    return receiver_main(list(argv), prog="flinks-bff receiver")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flinks-bff", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve_cmd = commands.add_parser("serve", help="run the BFF (production; settings from env)")
    serve_cmd.add_argument("--host", help="bind address (env BFF_HOST, default 127.0.0.1)")
    serve_cmd.add_argument("--port", type=int, help="port (env BFF_PORT, default 8000)")
    serve_cmd.add_argument("--workers", type=int, help="worker processes (env BFF_WORKERS)")

    dev_cmd = commands.add_parser(
        "dev",
        help="run the BFF with an embedded Redis, the Flinks sandbox when unconfigured and a "
        "receiver printing its events",
    )
    dev_cmd.add_argument("--host", help="bind address (default 127.0.0.1)")
    dev_cmd.add_argument("--port", type=int, help="port (default 8000)")
    dev_cmd.add_argument(
        "--sandbox-port", type=int, help="sandbox port (env SANDBOX_PORT, default 8001)"
    )

    commands.add_parser(
        "sandbox",
        help="run the Flinks sandbox alone (see `flinks-bff sandbox --help`)",
        add_help=False,
    )
    commands.add_parser(
        "receiver",
        help="run the development receiver of the BFF's events alone (see `flinks-bff receiver "
        "--help`)",
        add_help=False,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "sandbox":
        return sandbox(argv[1:])
    if argv and argv[0] == "receiver":
        return receiver(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    return dev(args)


if __name__ == "__main__":
    raise SystemExit(main())
