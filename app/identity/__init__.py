"""Who is calling: the owner of flows and links. `jwt.py` verifies bearer tokens and answers
their `sub`.

No web framework here: the API layer reads the `Authorization` header and maps `InvalidToken`
to its own responses.
"""

from app.identity.jwt import (
    ASYMMETRIC_ALGORITHMS,
    InvalidToken,
    JwtConfig,
    JwtVerifier,
    Reason,
    check_algorithms,
)

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "InvalidToken",
    "JwtConfig",
    "JwtVerifier",
    "Reason",
    "check_algorithms",
]
