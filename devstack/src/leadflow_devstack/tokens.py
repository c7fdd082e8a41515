"""Development bearer tokens for crm-api, signed with the key the dev stack gives it.

Only for the embedded stack and tests: crm-api accepts this key in development only.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

import jwt

AUDIENCE = "leadflow-crm-api"
Role = Literal["broker", "admin", "realtor"]


def dev_token(
    sub: str,
    role: Role,
    account_id: str,
    *,
    key: str,
    organisation_id: str | None = None,
    audience: str = AUDIENCE,
    lifetime: timedelta = timedelta(hours=1),
    now: datetime | None = None,
) -> str:
    """An HS256 JWT for `sub` with crm-api's claims; `lifetime` may be negative (an expired token)."""
    issued = now or datetime.now(UTC)
    claims: dict[str, object] = {
        "sub": sub,
        "role": role,
        "account_id": account_id,
        "aud": audience,
        "iat": issued,
        "exp": issued + lifetime,
    }
    if organisation_id is not None:
        claims["organisation_id"] = organisation_id
    return jwt.encode(claims, key, algorithm="HS256")


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for `token`."""
    return {"Authorization": f"Bearer {token}"}
