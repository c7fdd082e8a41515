"""The web session: the caller's bearer token in an HttpOnly cookie, and CSRF tokens bound to it.

The cookie holds the same JWT the JSON API takes, so a page and an API call see one identity and one
expiry. Every form carries `csrf`, an HMAC of the session's token under the web session key: a page
of another site cannot read it, and it dies with the session. Signing in (no session yet) uses a
double-submit token instead: a random cookie the sign-in form must repeat.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SESSION_COOKIE = "leadflow_session"
SIGN_IN_COOKIE = "leadflow_sign_in"
CSRF_FIELD = "csrf"


def csrf_token(secret: str, session_token: str) -> str:
    """The CSRF token of every form of the session holding `session_token`."""
    digest = hmac.new(secret.encode(), b"csrf\x00" + session_token.encode(), hashlib.sha256).hexdigest()
    return digest[:40]


def csrf_valid(secret: str, session_token: str, presented: str | None) -> bool:
    # As bytes: compare_digest refuses str with non-ASCII characters, which a forger may send.
    expected = csrf_token(secret, session_token).encode()
    return presented is not None and hmac.compare_digest(expected, presented.encode("utf-8", "surrogatepass"))


def sign_in_nonce() -> str:
    """The double-submit token of a sign-in form (cookie and field must match)."""
    return secrets.token_urlsafe(24)


def same_nonce(cookie: str | None, field: str | None) -> bool:
    if not cookie or not field:
        return False
    return hmac.compare_digest(cookie.encode("utf-8", "surrogatepass"), field.encode("utf-8", "surrogatepass"))
