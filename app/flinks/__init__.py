"""The Flinks API client package. It knows nothing of Redis, FastAPI or the rest of `app/`."""

from app.flinks.breaker import BreakerState, CircuitBreaker
from app.flinks.client import MAX_BODY_BYTES, Endpoint, FlinksClient
from app.flinks.codes import (
    FLINKS_CODE_OUTCOMES,
    FLINKS_ERROR,
    OAUTH_ERROR,
    OAUTH_ERROR_OUTCOMES,
    Outcome,
    OutcomeKind,
    clean_flinks_code,
    failure_for_flinks_code,
    outcome_for_flinks_code,
    outcome_for_oauth_error,
)
from app.flinks.connect import (
    CONNECT_OPTIONS,
    RESERVED_PARAMETERS,
    ConnectOptionError,
    build_connect_url,
)
from app.flinks.errors import (
    FlinksBadResponse,
    FlinksCircuitOpen,
    FlinksError,
    FlinksRejected,
    FlinksTimeout,
    FlinksUnavailable,
)
from app.flinks.models import FlinksLanguage
from app.flinks.outcomes import (
    AuthorizeOutcome,
    AuthorizeToken,
    Connected,
    Failed,
    FlinksChallenge,
    MfaRequired,
    Pending,
)
from app.flinks.policies import FlinksTimeouts, RetryPolicy

__all__ = [
    "CONNECT_OPTIONS",
    "FLINKS_CODE_OUTCOMES",
    "FLINKS_ERROR",
    "MAX_BODY_BYTES",
    "OAUTH_ERROR",
    "OAUTH_ERROR_OUTCOMES",
    "RESERVED_PARAMETERS",
    "AuthorizeOutcome",
    "BreakerState",
    "CircuitBreaker",
    "AuthorizeToken",
    "Connected",
    "ConnectOptionError",
    "Endpoint",
    "Failed",
    "FlinksBadResponse",
    "FlinksChallenge",
    "FlinksCircuitOpen",
    "FlinksClient",
    "FlinksError",
    "FlinksLanguage",
    "FlinksRejected",
    "FlinksTimeout",
    "FlinksTimeouts",
    "FlinksUnavailable",
    "MfaRequired",
    "Outcome",
    "OutcomeKind",
    "Pending",
    "RetryPolicy",
    "build_connect_url",
    "clean_flinks_code",
    "failure_for_flinks_code",
    "outcome_for_flinks_code",
    "outcome_for_oauth_error",
]
