"""OAuth2 bearer JWTs: verify signature, expiry, audience (and issuer when set), then read the claims."""

from __future__ import annotations

import hashlib
import json
import math
import time
from typing import Annotated

import jwt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from leadflow_crm_api.domain.principal import Principal, Role
from leadflow_crm_api.errors import Unauthenticated
from leadflow_crm_api.settings import CrmApiSettings

Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")]


class Claims(BaseModel):
    """The claims crm-api reads; others (iat, jti, scope...) are allowed and ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    sub: Id
    role: Role
    account_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
    organisation_id: Id | None = None


class TokenVerifier:
    def __init__(self, settings: CrmApiSettings) -> None:
        self._key = settings.verification_key
        self._auth = settings.auth
        self.leeway_seconds = settings.auth.leeway_seconds
        self._max_lifetime = settings.auth.max_lifetime_hours * 3600

    def verify(self, token: str) -> Principal:
        """The caller the token names; Unauthenticated (with a reason safe to return) otherwise."""
        try:
            decoded = jwt.decode(
                token,
                self._key,
                # One algorithm, from settings: never the token's own "alg" choice (alg confusion).
                algorithms=[self._auth.algorithm],
                audience=self._auth.audience,
                issuer=self._auth.issuer,
                leeway=self._auth.leeway_seconds,
                options={"require": ["exp", "sub", "aud"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("The bearer token has expired.") from exc
        except jwt.InvalidAudienceError as exc:
            raise Unauthenticated("The bearer token is for another audience.") from exc
        except jwt.InvalidSignatureError as exc:
            raise Unauthenticated("The bearer token's signature is not valid.") from exc
        except jwt.PyJWTError as exc:
            raise Unauthenticated("The bearer token is not valid.") from exc
        try:
            claims = Claims.model_validate(decoded)
        except ValidationError as exc:
            fields = sorted({str(e["loc"][0]) for e in exc.errors() if e["loc"]})
            raise Unauthenticated(f"The bearer token lacks valid claims: {', '.join(fields)}.") from exc
        expires = self._expiry(decoded["exp"])
        session = hashlib.sha256(json.dumps(decoded, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        return Principal(claims.sub, claims.role, claims.account_id, claims.organisation_id, expires, session)

    def _expiry(self, exp: object) -> float:
        """The token's `exp` (required and checked not past by PyJWT, which takes any `int()`-able value) as epoch
        seconds, within `max_lifetime_hours` from now: an `exp` in milliseconds kept a session signed in for
        millennia (its sign-out could not even store it), one of 400 digits was a 500 (helper 200's review)."""
        try:
            expires = float(exp)  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):
            expires = math.inf
        if not math.isfinite(expires) or expires > time.time() + self._max_lifetime:
            raise Unauthenticated(
                f"The bearer token's expiry is more than {self._max_lifetime // 3600} hours ahead (exp is in seconds)."
            )
        return expires
