"""The errors the BFF reports, each with an HTTP status and a stable code (DESIGN section 7).

Framework-free, so the domain layer can raise them; `app.api.problems` renders them as
RFC 9457 problem+json.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar


class AppError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    title: ClassVar[str] = "Internal error"
    default_detail: ClassVar[str | None] = None

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        flinks_code: str | None = None,
    ) -> None:
        self.detail = detail if detail is not None else self.default_detail
        self.headers = dict(headers or {})
        self.flinks_code = flinks_code
        super().__init__(self.detail or self.title)


class ValidationFailed(AppError):
    status, code, title = 422, "validation_error", "The request is not valid"


# Answered by the web framework and the middleware rather than raised by a route: the classes
# give their codes a status and a title like every other (app/api/problems.py, security.py).
class BadRequest(AppError):
    # FastAPI's answer to a body it could not read, such as JSON that is not UTF-8.
    status, code, title = 400, "bad_request", "Bad Request"


class NotFound(AppError):
    status, code, title = 404, "not_found", "Not Found"


class MethodNotAllowed(AppError):
    status, code, title = 405, "method_not_allowed", "Method Not Allowed"


class HttpError(AppError):
    # Any other status the framework raises (a static file it may not read: 401); its title is
    # the status' phrase. No API operation answers it.
    status, code, title = 500, "http_error", "HTTP error"


class OriginNotAllowed(AppError):
    status, code, title = 403, "origin_not_allowed", "Origin not allowed"
    default_detail = "Only the allowed origins (BFF_CORS_ORIGINS) may call the API cross-site."


class FlowNotFound(AppError):
    status, code, title = 404, "flow_not_found", "No such flow"
    default_detail = "The flow does not exist, has expired, or belongs to another session."


class FlowExpired(AppError):
    status, code, title = 410, "flow_expired", "The flow has expired"


class StateInvalid(AppError):
    # 403, not DESIGN's 400: the request is well formed, it is this browser that may not
    # complete the flow (security.md A2 tests expect 403 too).
    status, code, title = 403, "state_invalid", "The OAuth state is not valid"
    default_detail = "The link attempt is unknown, expired, already used or from another browser."


class ReturnUrlNotAllowed(AppError):
    status, code, title = 400, "return_url_not_allowed", "The return URL is not allowed"
    default_detail = "return_url must be exactly one of the configured return URLs."


class UnsupportedMediaType(AppError):
    status, code, title = 415, "unsupported_media_type", "Unsupported Media Type"


class Conflict(AppError):
    status, code, title = 409, "conflict", "Conflict"


class Unauthenticated(AppError):
    # jwt and header modes: no identity, or one that cannot be believed. The route layer adds
    # `WWW-Authenticate: Bearer` in jwt mode.
    status, code, title = 401, "unauthenticated", "No identity"
    default_detail = "This request needs the caller's identity."


class WebhookSignatureInvalid(AppError):
    # Flinks' webhooks in: the HMAC is missing, malformed or wrong. Its own code, so a
    # misconfigured FLINKS_WEBHOOK_SECRET or header is told apart from a caller's identity.
    status, code, title = 401, "webhook_signature_invalid", "The webhook signature is not valid"
    default_detail = "The body's HMAC-SHA256 (FLINKS_WEBHOOK_SECRET) is missing or does not match."


class IdentityUnavailable(AppError):
    # jwt mode: the identity provider's keys cannot be fetched and none are cached. The token
    # may be fine: a 401 would make clients drop it or loop on signing in again.
    status, code, title = 503, "identity_unavailable", "The identity provider is unavailable"
    default_detail = "The keys that verify bearer tokens cannot be fetched; try again shortly."


class LoginOwnedElsewhere(AppError):
    status, code, title = 409, "login_owned_elsewhere", "The account is linked by someone else"
    default_detail = "This bank account is already linked by another user."


class HandoffInvalid(AppError):
    # One code for every refusal of a native app's handoff (PKCE challenge, code, verifier,
    # owner, expiry, replay): nothing tells an attacker which part was wrong.
    status, code, title = 400, "handoff_invalid", "The handoff was refused"
    default_detail = "The handoff code or verifier is not valid; start the link again."


class LinkNotFound(AppError):
    status, code, title = 404, "link_not_found", "No such link"
    default_detail = "The link does not exist, was deleted, or belongs to another user."


class RateLimited(AppError):
    status, code, title = 429, "rate_limited", "Too many requests"


# The BFF's answers when Flinks fails a call (the Flinks client raises its own FlinksRejected,
# FlinksUnavailable, FlinksTimeout; the domain turns those into these).
class UpstreamRejected(AppError):
    status, code, title = 502, "flinks_rejected", "Flinks refused the request"


class UpstreamUnavailable(AppError):
    status, code, title = 503, "flinks_unavailable", "Flinks is unavailable"


class UpstreamTimeout(AppError):
    status, code, title = 504, "flinks_timeout", "Flinks did not answer in time"


class ShuttingDown(AppError):
    status, code, title = 503, "shutting_down", "This instance is shutting down"
    default_detail = "Requests in flight finish; send new ones to another instance."


class StoreMisconfigured(AppError):
    status, code, title = 503, "store_misconfigured", "The session store may evict keys"
    default_detail = "Redis maxmemory-policy evicts any key; use noeviction or volatile-*."


class PayloadTooLarge(AppError):
    status, code, title = 413, "payload_too_large", "The request body is too large"


class HeadersTooLarge(AppError):
    status, code, title = 431, "headers_too_large", "The request headers are too large"


class RequestTimeout(AppError):
    status, code, title = 408, "request_timeout", "The request was not received in time"
    default_detail = "The request was sent too slowly; the connection is closed."


class Overloaded(AppError):
    status, code, title = 503, "overloaded", "This instance is at capacity"
    default_detail = "Too many requests are in progress; retry after the Retry-After delay."


class StoreUnavailable(AppError):
    status, code, title = 503, "store_unavailable", "The session store is unavailable"
    default_detail = "Try again in a moment."


def error_classes() -> dict[str, type[AppError]]:
    """Every stable code the BFF answers, with the class that defines it (its status and title):
    AppError's `internal_error` and each subclass', wherever they are defined (a module must be
    imported for its own to count). A subclass may inherit a code; two may not define one."""
    found: dict[str, type[AppError]] = {}
    pending: list[type[AppError]] = [AppError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if "code" not in vars(cls):
            continue
        if found.setdefault(cls.code, cls) is not cls:
            other = found[cls.code].__qualname__
            raise TypeError(f"{cls.__qualname__} and {other} both define {cls.code!r}")
    return found
