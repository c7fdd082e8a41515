"""Service tokens: the shared secret one leadflow service shows another on an internal HTTP call, as
`Authorization: Bearer <token>` (decision 0082). The router's internal API takes crm-api's.

A configured token must be at least 32 characters of RFC 6750's token alphabet (letters, digits and
`-._~+/`, then `=` padding), so it goes into a header as it is and cannot be guessed; `openssl rand -hex 32`
or `python -c "import secrets; print(secrets.token_urlsafe(32))"` makes one.
"""

from __future__ import annotations

import re

from pydantic import SecretStr

MIN_CHARS = 32
MAX_CHARS = 512
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def check_service_token(value: SecretStr | None, name: str) -> None:
    """ValueError naming the setting `name` (never the value) when a configured token is not fit to be one."""
    if value is None:
        return
    token = value.get_secret_value()
    if not MIN_CHARS <= len(token) <= MAX_CHARS:
        raise ValueError(f"{name}: a service token is {MIN_CHARS} to {MAX_CHARS} characters (a random secret)")
    if _TOKEN68.fullmatch(token) is None:
        raise ValueError(f"{name}: a service token is letters, digits and -._~+/ (then = padding), fit for a header")
