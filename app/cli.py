"""The `flinks-bff` command: serve (production), dev (all local), sandbox (Flinks emulator)."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from types import FrameType

import httpx
import uvicorn

from app.embedded_redis import EmbeddedRedis
from app.http_server import EdgeHttpProtocol
from app.settings import ConfigurationError, Settings, load_settings

# Flinks' public Toolbox credentials (flinks-contract.md 1.2): the sandbox's defaults.
TOOLBOX_CUSTOMER_ID = "43387ca6-0391-4c82-857d-70d95f087ecb"
TOOLBOX_SECRET_KEY = "c4569c54-e167-4d34-8de6-f4113bc82414"  # noqa: S105 - public test value
TOOLBOX_API_KEY = "3d5266a8-b697-48d4-8de6-52e2e2662acc"
SANDBOX_START_TIMEOUT = 20.0


def _uvicorn(settings: Settings, *, workers: int) -> None:
    uvicorn.run(
        "app.main:create_app_from_env",
        factory=True,
        host=settings.bff_host,
        port=settings.bff_port,
        workers=workers,
        # uvicorn's httptools protocol with header limits and a request read timeout; each
        # worker reads them from the environment (BFF_MAX_HEADER_BYTES, ...).
        http=EdgeHttpProtocol,
        ws="none",  # no WebSocket routes: an upgrade is not offered at all
        access_log=False,  # ours never prints query strings
        log_config=None,  # logging is configured by create_app_from_env
        server_header=False,
        proxy_headers=False,  # X-Forwarded-For is trusted only from BFF_TRUSTED_PROXIES
        timeout_graceful_shutdown=30,
    )


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


@contextmanager
def _sandbox_process(port: int, redirect_uri: str) -> Iterator[str]:
    base_url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
        [sys.executable, "-m", "app.sandbox", "--host", "127.0.0.1", "--port", str(port)],
        env={**os.environ, "SANDBOX_REDIRECT_URIS": redirect_uri},
    )
    try:
        deadline = time.monotonic() + SANDBOX_START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise SystemExit(
                    f"flinks-bff: the Flinks sandbox exited (code {process.returncode})"
                )
            try:
                httpx.get(f"{base_url}/v2/", timeout=0.5)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise SystemExit("flinks-bff: the Flinks sandbox did not start") from None
                time.sleep(0.1)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()


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


def dev(args: argparse.Namespace) -> int:
    """Settings are read once; what development adds (local URLs, the embedded Redis, the
    sandbox) is handed to the server as environment, which its app factory reads."""
    _export(BFF_HOST=args.host, BFF_PORT=args.port, BFF_WORKERS=1)
    settings = _settings_or_exit()
    if settings.is_production:
        print("flinks-bff: `dev` is for development; use `flinks-bff serve`", file=sys.stderr)  # noqa: T201
        return 2
    local = _local_urls(settings)
    public_url = local.get("BFF_PUBLIC_URL") or str(settings.bff_public_url).rstrip("/")
    _export(**local)
    # uvicorn re-raises SIGTERM after its own shutdown; exiting through SystemExit instead of
    # dying on the signal lets the stack below stop the sandbox and the embedded Redis.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    with ExitStack() as stack:
        notes = []
        if settings.redis_url is None:
            embedded = stack.enter_context(EmbeddedRedis())
            _export(REDIS_URL=embedded.url)
            notes.append(f"  Redis    {embedded.url} (embedded Valkey; gone when this stops)")
        else:
            notes.append("  Redis    REDIS_URL from your environment")
        if not settings.flinks_configured:
            sandbox_url = stack.enter_context(
                _sandbox_process(args.sandbox_port, f"{public_url}/v1/oauth/callback")
            )
            _export(
                FLINKS_API_URL=sandbox_url,
                FLINKS_CONNECT_URL=f"{sandbox_url}/v2/",
                FLINKS_CUSTOMER_ID=TOOLBOX_CUSTOMER_ID,
                FLINKS_SECRET_KEY=TOOLBOX_SECRET_KEY,
                FLINKS_API_KEY=TOOLBOX_API_KEY,
                FLINKS_DEMO="true",
                FLINKS_INSTITUTIONS="FlinksCapital",
            )
            notes.append(f"  Flinks   {sandbox_url} (local sandbox; Connect page at /v2/)")
            notes.append("  Bank     Flinks Capital: Greatday / Everyday (MFA) or greatday_nomfa")
            notes.append("           MFA answers: Montreal, Canada, Triangle")
        else:
            notes.append(f"  Flinks   {settings.flinks_base_url}")
        base = f"http://{settings.bff_host}:{settings.bff_port}"
        print(  # noqa: T201
            "\nflinks-bff (development)\n"
            f"  Demo     {base}/\n"
            f"  API docs {base}/docs\n"
            f"  Health   {base}/readyz\n" + "\n".join(notes) + "\n",
            flush=True,
        )
        _uvicorn(settings, workers=1)
    return 0


def sandbox(argv: Sequence[str]) -> int:
    from app.sandbox.cli import main as sandbox_main

    return sandbox_main(list(argv))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flinks-bff", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve_cmd = commands.add_parser("serve", help="run the BFF (production; settings from env)")
    serve_cmd.add_argument("--host", help="bind address (env BFF_HOST, default 127.0.0.1)")
    serve_cmd.add_argument("--port", type=int, help="port (env BFF_PORT, default 8000)")
    serve_cmd.add_argument("--workers", type=int, help="worker processes (env BFF_WORKERS)")

    dev_cmd = commands.add_parser(
        "dev", help="run the BFF with an embedded Redis and the Flinks sandbox when unconfigured"
    )
    dev_cmd.add_argument("--host", help="bind address (default 127.0.0.1)")
    dev_cmd.add_argument("--port", type=int, help="port (default 8000)")
    dev_cmd.add_argument("--sandbox-port", type=int, default=8001, help="sandbox port (8001)")

    commands.add_parser(
        "sandbox",
        help="run the Flinks sandbox alone (see `flinks-bff sandbox --help`)",
        add_help=False,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "sandbox":
        return sandbox(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    return dev(args)


if __name__ == "__main__":
    raise SystemExit(main())
