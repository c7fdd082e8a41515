"""The router's HTTP edge: internal routes for crm-api: "who is next" (decision 0038), a lead's
routing decisions ("why this agent", issue 15), the dry-run, and whether an agent can take a pond lead now.

Every request but the probes and `/metrics` must carry crm-api's service token (`ServiceTokenGate`, decision
0082), beside the NetworkPolicy that lets only crm-api's pods reach the port (decision 0080)."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from leadflow_router.domain.model import RoutingRejected
from leadflow_router.handlers import RouterService, RuleSetRefusedError
from leadflow_shared.events.routing import LeadSummary
from leadflow_shared.routing_rules import RuleSet

log = logging.getLogger(__name__)

# Open to anyone who reaches the port: the kubelet's probes and the metrics scraper (no account data).
OPEN_PATHS = frozenset({"/health/live", "/health/ready", "/metrics"})
REALM = 'Bearer realm="leadflow-router"'
MISSING = "The router's internal API needs crm-api's service token (Authorization: Bearer)."
WRONG = "The service token is not valid."
REFUSALS_LOGGED_EVERY = 60.0  # seconds: a flood of refused calls is one line a minute (each is counted as a 401)


class ServiceTokens:
    """The tokens the internal API takes (ROUTER_API_TOKEN and, while rotating, ROUTER_API_TOKEN_NEXT). A sent
    token is compared with each of them, always all, in constant time, as SHA-256 digests: the time taken
    tells neither a token's characters, nor its length, nor which one matched. None configured: nothing passes."""

    def __init__(self, tokens: Iterable[str]) -> None:
        self._digests = tuple(hashlib.sha256(token.encode()).digest() for token in tokens)

    def __bool__(self) -> bool:
        return bool(self._digests)

    def refusal(self, headers: Iterable[tuple[bytes, bytes]]) -> str | None:
        """Why a request with these (ASGI) headers is refused, or None: exactly one `Authorization: Bearer`
        header whose token is one of ours."""
        sent = [value for name, value in headers if name.lower() == b"authorization"]
        scheme, _, credentials = sent[0].partition(b" ") if len(sent) == 1 else (b"", b"", b"")
        token = credentials.strip(b" ")
        if scheme.lower() != b"bearer" or not token:
            return MISSING
        digest = hashlib.sha256(token).digest()
        matched = [hmac.compare_digest(digest, expected) for expected in self._digests]
        return None if any(matched) else WRONG


class ServiceTokenGate:
    """ASGI middleware: every request but `OPEN_PATHS` needs the service token, else a 401 with the reason as
    JSON and nothing of the route: every `/internal/` route, one added later, a path no route has (no 404 to map
    the API by) and the OpenAPI pages alike."""

    def __init__(self, app: ASGIApp, tokens: ServiceTokens) -> None:
        self.app, self.tokens = app, tokens
        self._next_line, self._unlogged = 0.0, 0

    def _note(self, refusal: str) -> None:
        now = time.monotonic()
        if now < self._next_line:
            self._unlogged += 1
            return
        kind = "no token" if refusal == MISSING else "wrong token"
        log.warning("internal API call refused: %s (%d more refused since the last line)", kind, self._unlogged)
        self._next_line, self._unlogged = now + REFUSALS_LOGGED_EVERY, 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in {"http", "websocket"} or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        refusal = self.tokens.refusal(scope["headers"])
        if refusal is None:
            await self.app(scope, receive, send)
            return
        self._note(refusal)
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        challenge = REALM if refusal == MISSING else f'{REALM}, error="invalid_token"'
        refused = JSONResponse({"detail": refusal}, status_code=401, headers={"WWW-Authenticate": challenge})
        await refused(scope, receive, send)


AccountId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
AgentId = Annotated[str, Path(min_length=1, max_length=64)]  # as the events carry it (shared AgentId)


class DryRun(BaseModel):
    """A lead as intake would pass it on (or a past lead's id), and optionally a draft rule set."""

    model_config = ConfigDict(extra="forbid")

    lead: LeadSummary | None = None
    lead_id: uuid.UUID | None = None
    rules: RuleSet | None = Field(default=None, description="A draft; none: the account's current rules.")

    @model_validator(mode="after")
    def _one_lead(self) -> DryRun:
        if (self.lead is None) == (self.lead_id is None):
            raise ValueError("give either lead or lead_id")
        return self


def install(app: FastAPI, service: Callable[[], RouterService], *, tokens: ServiceTokens) -> None:
    """The internal routes, behind the service-token gate (`tokens`: the router's settings' `api_tokens`)."""
    app.add_middleware(ServiceTokenGate, tokens=tokens)
    _install_can_take(app, service)

    @app.get("/internal/v1/accounts/{account_id}/routing/rules/{rule_id}/next", tags=["internal"])
    async def who_is_next_by_rule(
        account_id: AccountId,
        rule_id: Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")],
        source: Annotated[str, Query(min_length=1, max_length=100)] = "default",
    ) -> dict[str, Any]:
        """For crm-api only: who the next lead of a routing rule goes to (`source`: the lead source, for
        rules that rotate over its agents), and why the rule's other agents would not get it."""
        try:
            pool, picked = await service().next_up_by_rule(account_id, rule_id, source)
        except RoutingRejected as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from exc
        return {
            "rule_id": rule_id,
            "pool": pool.rule or "the lead source's rotation",
            "mode": pool.mode,
            "next": picked,
            "eligible": list(pool.who.ids),
            "skipped": [{"agent_id": a, "reason": why} for a, why in pool.who.skipped],
        }

    @app.post("/internal/v1/accounts/{account_id}/routing/dry-run", tags=["internal"])
    async def dry_run(account_id: AccountId, body: DryRun) -> dict[str, Any]:
        """For crm-api only: how the lead would be routed now, by the current rules or a draft, changing
        nothing: the decision as data (rules tried, chosen, skipped and why) and the state it would leave."""
        try:
            outcome, decision = await service().dry_run(
                account_id, body.lead if body.lead is not None else str(body.lead_id), body.rules
            )
        except RoutingRejected as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from exc
        except RuleSetRefusedError as exc:
            raise HTTPException(status_code=422, detail=exc.reasons) from exc
        state = outcome.state
        return {
            "decision": decision.model_dump(mode="json"),
            "status": state.status.value if state is not None else "merged",
            "holder": state.holder if state is not None else None,
            "offered_to": [o.agent_id for o in state.open_offers] if state is not None else [],
        }

    @app.get("/internal/v1/accounts/{account_id}/leads/{lead_id}/routing", tags=["internal"])
    async def routing_info(account_id: AccountId, lead_id: uuid.UUID) -> dict[str, Any]:
        """For crm-api only (its service token): the lead's latest routing decisions, oldest first: the rules
        tried, who was chosen, skipped and why, the rotation."""
        try:
            decisions = await service().routing_of(account_id, str(lead_id))
        except RoutingRejected as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from exc
        return {"lead_id": str(lead_id), "decisions": [d.model_dump(mode="json") for d in decisions]}

    @app.get("/internal/v1/accounts/{account_id}/next-up", tags=["internal"])
    async def who_is_next(
        account_id: AccountId,
        source: Annotated[str, Query(min_length=1, max_length=100)],
    ) -> dict[str, Any]:
        """For crm-api only (its service token): who the next general lead of `source` goes to, and why the
        others would not get it."""
        try:
            up = await service().next_up(account_id, source)
        except RoutingRejected as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from exc
        return {
            "source": up.source,
            "lead_group": up.lead_group,
            "round_robin": up.round_robin,
            "next": list(up.next),
            "eligible": [a.agent_id for a in up.eligibility.eligible],
            "skipped": [{"agent_id": a, "reason": why} for a, why in up.eligibility.skipped],
        }


def _install_can_take(app: FastAPI, service: Callable[[], RouterService]) -> None:
    @app.get("/internal/v1/accounts/{account_id}/agents/{agent_id}/can-take", tags=["internal"])
    async def can_take(account_id: AccountId, agent_id: AgentId) -> dict[str, Any]:
        """For crm-api only (its service token): whether the agent could claim a pond lead now, by the check the
        router gives such a claim (an active agent of the office, not paused, away, off hours, on a holiday or at
        a cap), and why not. Read-only; 404 for an unknown account."""
        try:
            reason = await service().can_take(account_id, agent_id)
        except RoutingRejected as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from exc
        return {"can_take": reason is None, "reason": reason}
