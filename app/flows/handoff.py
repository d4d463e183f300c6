"""The native app's handoff (RFC 8252 + RFC 7636): PKCE values, and the one-time code.

The app starts a flow with `code_challenge` = BASE64URL(SHA256(code_verifier)) (`S256`; `plain`
is refused). The bank sign-in runs in the system browser, which does not share the app's
cookies; when it comes back, the BFF keeps the loginId sealed and sends the browser to the app's
return URL with a one-time `handoff_code`. Only the app, which holds the verifier, can redeem it.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets

from app.errors import HandoffInvalid

# RFC 7636 4.1-4.2: 43-128 characters of the unreserved set; a challenge of S256 is 43.
VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")
CHALLENGE = re.compile(r"[A-Za-z0-9._~-]{43,128}")
CODE = re.compile(r"[A-Za-z0-9_-]{43}")


def checked_challenge(challenge: str | None, method: str | None) -> str | None:
    """The challenge a flow is bound to, None for a browser flow; HandoffInvalid for anything
    but a well-formed S256 challenge (a method without a challenge, `plain`, bad characters)."""
    if challenge is None and method is None:
        return None
    if method != "S256" or challenge is None or not CHALLENGE.fullmatch(challenge):
        raise HandoffInvalid(
            "code_challenge must be an S256 challenge (RFC 7636); plain is refused."
        )
    return challenge


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def verifier_challenge(verifier: str) -> str:
    """S256 of a well-formed verifier; for anything else '', which no flow's challenge is."""
    return s256(verifier) if VERIFIER.fullmatch(verifier) else ""


def new_code() -> str:
    """256 bits from the OS's CSPRNG, URL-safe."""
    return secrets.token_urlsafe(32)


def code_hash(code: str) -> str:
    """What Redis keeps of a code: never the code."""
    return hashlib.sha256(code.encode()).hexdigest()
