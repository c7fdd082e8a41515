"""The router's internal HTTP API (decision 0038), as crm-api calls it: "who is next", a lead's routing
decisions, the dry-run and whether an agent can take a lead now (issue 15). The router owns rotation and
eligibility (availability, caps), so crm-api asks it.

Every call carries crm-api's service token (`CRM_API_ROUTER_TOKEN`, decision 0082): `RouterApi.of` builds the
client from the settings, the one way the app makes one. Its answers become crm-api's errors here: no answer,
a 5xx or a refused token (401, logged as a misconfiguration) is `Unavailable` (503), a 404 `NotFound` with the
caller's words, a 422 `InvalidRequest` with the router's reasons (it names agents and rules, never a contact's
details), a 413 `ContentTooLarge` (crm-api's body limit may be set above the router's 4 MiB: not "try again").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from leadflow_crm_api.errors import ContentTooLarge, InvalidRequest, NotFound, Unavailable
from leadflow_crm_api.settings import CrmApiSettings

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 5.0
NO_ANSWER = "The router did not answer; try again."


@dataclass(frozen=True, slots=True)
class CanTake:
    """The router's answer: could the agent claim a pond lead now, and why not (paused, at a cap...)."""

    can_take: bool
    reason: str | None


def segment(value: str) -> str:
    """`value` (an account, agent or rule id) as one segment of the router's path: escaped, and a "." or ".."
    spelled out, which HTTP clients otherwise remove as dot segments (a rule saved as ".." was asked at its parent's
    path: helper 175)."""
    quoted = quote(value, safe="")
    return quoted.replace(".", "%2E") if quoted in {".", ".."} else quoted


class RouterApi:
    """One call per request, each on a client of its own (the calls are rare: a person asking)."""

    def __init__(self, base_url: str, *, token: SecretStr | None, timeout: float = TIMEOUT_SECONDS) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token is not None else {}

    @classmethod
    def of(cls, settings: CrmApiSettings, *, timeout: float = TIMEOUT_SECONDS) -> RouterApi:
        """The router's API at CRM_API_ROUTER_URL, called with CRM_API_ROUTER_TOKEN."""
        return cls(settings.router_url, token=settings.router_token, timeout=timeout)

    async def get(self, path: str, *, missing: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        return await self._call("GET", path, missing=missing, params=params)

    async def post(self, path: str, body: dict[str, Any], *, missing: str) -> dict[str, Any]:
        return await self._call("POST", path, missing=missing, json=body)

    async def can_take(self, account_id: str, agent_id: str) -> CanTake:
        """Whether the agent could claim a pond lead now, by the router's own check of such a claim (issue 15).
        `Unavailable` when the router does not answer or answers nonsense; `NotFound` for an unknown account."""
        path = f"/internal/v1/accounts/{segment(account_id)}/agents/{segment(agent_id)}/can-take"
        answer = await self.get(path, missing="No such account.")
        can, reason = answer.get("can_take"), answer.get("reason")
        if not isinstance(can, bool) or not (reason is None or isinstance(reason, str)) or can == bool(reason):
            raise Unavailable(NO_ANSWER)
        return CanTake(can, reason[:500] if reason else None)

    async def _call(self, method: str, path: str, *, missing: str, **sent: Any) -> dict[str, Any]:
        try:
            # No proxy from the environment (HTTP_PROXY...): the service token goes to the router alone (helper 175).
            async with httpx.AsyncClient(timeout=self.timeout, headers=self._headers, trust_env=False) as client:
                response = await client.request(method, f"{self.base_url}{path}", **sent)
        except httpx.HTTPError as exc:
            raise Unavailable(NO_ANSWER) from exc
        if response.status_code == 404:
            raise NotFound(missing)
        if response.status_code == 422:
            raise InvalidRequest(_reasons(response))
        if response.status_code == 413:  # a body crm-api took (its limit may be set higher) the router does not
            raise ContentTooLarge("The router takes no request this large: send a smaller rule set or lead.")
        if response.status_code == 401:
            log.error(
                "the router refused crm-api's service token: CRM_API_ROUTER_TOKEN must be one of the router's "
                "ROUTER_API_TOKEN and ROUTER_API_TOKEN_NEXT"
            )
            raise Unavailable(NO_ANSWER)
        if response.status_code != 200:
            raise Unavailable(NO_ANSWER)
        try:
            answer = response.json()
        except ValueError as exc:
            raise Unavailable(NO_ANSWER) from exc
        if not isinstance(answer, dict):
            raise Unavailable(NO_ANSWER)
        return answer


def _reasons(response: httpx.Response) -> str:
    """The router's reasons for a 422 when they are its own (a list of sentences), else a generic one."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, list) and detail and all(isinstance(d, str) for d in detail):
        return "; ".join(detail[:10])
    return "The router refused the request."
