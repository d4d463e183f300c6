"""``python -m app.sandbox`` / ``flinks-bff sandbox``: run the sandbox with uvicorn."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

import uvicorn
from pydantic import ValidationError

from app.sandbox.app import create_sandbox_app
from app.sandbox.config import SandboxSettings


def _boolean(value: str) -> bool:
    text = value.strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


# flag -> (settings field, type, help). Flags override SANDBOX_* environment variables.
_VALUE_FLAGS: dict[str, tuple[str, Callable[[str], Any], str]] = {
    "--secret-key": ("secret_key", str, "secret for GenerateAuthorizeToken's flinks-auth-key"),
    "--api-key": ("api_key", str, "x-api-key the data endpoints require (empty: no check)"),
    "--token-ttl": ("token_ttl_seconds", float, "authorize token lifetime, seconds"),
    "--mfa-rounds": ("mfa_rounds", int, "security questions asked per Greatday login (1-3)"),
    "--detail-pending-polls": ("detail_pending_polls", int, "202s before GetAccountsDetail is 200"),
    "--connect-error-users": ("connect_error_users", str, "redirect (default) or event"),
    "--public-url": ("public_url", str, "base URL for absolute links (default: from the request)"),
    "--latency-ms": ("latency_ms", float, "added latency on API calls"),
    "--jitter-ms": ("jitter_ms", float, "random extra latency, up to this"),
    "--error-rate": ("error_rate", float, "share of API calls answered with --error-status"),
    "--error-status": ("error_status", int, "status of injected errors (default 500)"),
    "--error-code": ("error_code", str, "FlinksCode of injected errors"),
    "--timeout-rate": ("timeout_rate", float, "share of API calls held --timeout-seconds"),
    "--timeout-seconds": ("timeout_seconds", float, "how long a timed-out response is held"),
    "--drop-rate": ("drop_rate", float, "share of API calls whose connection is dropped"),
    "--fault-seed": ("fault_seed", int, "seed for reproducible fault sequences"),
    # Switches (app/sandbox/switches.py; the README's behaviour table).
    "--wrong-answer": ("wrong_answer", str, "fail (default) or new_challenge"),
    "--mfa-token-reuse": ("mfa_token_reuse", str, "allow (default) or refuse"),
    "--api-key-check": ("api_key_check", str, "required (default) or optional"),
    "--redirect-message": ("redirect_message", str, "both (default), url_only or top_level"),
    "--js-redirect": ("js_redirect", str, "honour (default) or ignore"),
    "--oauth-token": ("oauth_token", str, "optional (default) or required"),
    "--unknown-customer-code": (
        "unknown_customer_code",
        str,
        "ACCESS_DENIED (default) or CUSTOMER_NOT_FOUND",
    ),
    "--invalid-login-status": ("invalid_login_status", int, "401 (default) or 400"),
    "--connect-cached-pending-seconds": (
        "connect_cached_pending_seconds",
        float,
        "202 OPERATION_PENDING window of a cached /Authorize after Connect (default 0)",
    ),
    "--slow-bank-seconds": ("slow_bank_seconds", float, "test_slow_bank's live /Authorize time"),
    "--dispatched-seconds": ("dispatched_seconds", float, "background time after a 202"),
    # Webhooks (app/sandbox/webhooks.py; switches also at /__sandbox/webhooks/switches).
    "--webhook-url": ("webhook_url", str, "where to POST Flinks webhooks (default: none sent)"),
    "--webhook-secret": ("webhook_secret", str, "HMAC key signing the webhooks (empty: unsigned)"),
    "--webhook-header": (
        "webhook_header",
        str,
        "flinks-authenticity-key (default) or X-Flinks-Signature",
    ),
    "--webhook-fail-first": ("webhook_fail_first", int, "attempts counted as failed (0-10)"),
    "--webhook-retry-seconds": ("webhook_retry_seconds", float, "pause between attempts"),
    "--webhook-duplicates": ("webhook_duplicates", int, "copies of each event (default 1)"),
    "--webhook-bad-signature": (
        "webhook_bad_signature",
        _boolean,
        "true: sign with a wrong key",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flinks-sandbox", description="Local emulator of the Flinks API (Toolbox instance)."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--access-log", action="store_true", help="log every request")
    parser.add_argument(
        "--customer-id", dest="customer_ids", action="append", help="accepted customer id (repeat)"
    )
    parser.add_argument(
        "--redirect-uri", dest="redirect_uris", action="append", help="whitelisted redirect_uri"
    )
    parser.add_argument("--no-api-key", action="store_true", help="do not check x-api-key")
    parser.add_argument(
        "--no-token-required",
        action="store_true",
        help="authorize token optional, as for integrations made before October 2024",
    )
    parser.add_argument(
        "--random-login-ids", action="store_true", help="a new LoginId for every connection"
    )
    for flag, (field, kind, text) in _VALUE_FLAGS.items():
        parser.add_argument(flag, dest=field, type=kind, help=text)
    return parser


def settings_from_args(args: argparse.Namespace) -> SandboxSettings:
    overrides: dict[str, Any] = {
        field: getattr(args, field)
        for field, _, _ in _VALUE_FLAGS.values()
        if getattr(args, field) is not None
    }
    for field in ("customer_ids", "redirect_uris"):
        if getattr(args, field):
            overrides[field] = getattr(args, field)
    if args.no_api_key:
        overrides["api_key"] = ""
    if args.no_token_required:
        overrides["require_authorize_token"] = False
    if args.random_login_ids:
        overrides["stable_login_ids"] = False
    return SandboxSettings(**overrides)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = settings_from_args(args)
    except ValidationError as exc:
        sys.stderr.write(f"flinks-sandbox: invalid settings\n{exc}\n")
        return 2
    uvicorn.run(
        create_sandbox_app(settings),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=args.access_log,
        ws="none",
        lifespan="off",
    )
    return 0
