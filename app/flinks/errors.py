"""Typed failures of calls to Flinks.

Every message is a fixed sentence built from our own constants (the endpoint name, an HTTP
status, a FlinksCode that passed `codes.clean_flinks_code`): never a token, the secret key, a
loginId, a RequestId, a URL with a query, or text from Flinks' response body.
"""

from __future__ import annotations


class FlinksError(Exception):
    """Base of every error raised by `app.flinks`.

    `may_have_been_sent` is False only when the request certainly never left this process
    (connect error, connect or pool timeout); only then is a non-idempotent call safe to repeat.
    """

    def __init__(self, message: str, *, endpoint: str, may_have_been_sent: bool) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.may_have_been_sent = may_have_been_sent


class FlinksUnavailable(FlinksError):
    """Flinks could not be reached, answered 5xx, or answered 429."""

    def __init__(
        self,
        message: str,
        *,
        endpoint: str,
        may_have_been_sent: bool,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, endpoint=endpoint, may_have_been_sent=may_have_been_sent)
        self.status = status
        self.retry_after = retry_after


class FlinksCircuitOpen(FlinksUnavailable):
    """Not sent: the circuit breaker holds calls back after repeated failures."""

    def __init__(self, message: str, *, endpoint: str, retry_after: float) -> None:
        super().__init__(
            message, endpoint=endpoint, may_have_been_sent=False, retry_after=retry_after
        )


class FlinksTimeout(FlinksError):
    """No answer within the configured timeout (connect, pool, write or read)."""


class FlinksRejected(FlinksError):
    """A 4xx the BFF cannot recover from by itself, e.g. our secret key refused."""

    def __init__(
        self, message: str, *, endpoint: str, status: int, flinks_code: str | None
    ) -> None:
        super().__init__(message, endpoint=endpoint, may_have_been_sent=True)
        self.status = status
        self.flinks_code = flinks_code


class FlinksBadResponse(FlinksError):
    """An answer we cannot use: unexpected status, invalid JSON, wrong shape, too large."""

    def __init__(self, message: str, *, endpoint: str, status: int | None = None) -> None:
        super().__init__(message, endpoint=endpoint, may_have_been_sent=True)
        self.status = status
