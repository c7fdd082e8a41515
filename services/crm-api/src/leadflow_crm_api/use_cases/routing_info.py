""" "Why this agent" and the dry-run (issue 15, items 6-7): the use cases the JSON routes register
(routes/routing_info.py) and the web pages call. The router decides and keeps the decisions; crm-api asks
its internal API (`adapters.router_api`) and adds agents' names.

A lead's routing info is for the brokers and admins of its account: a decision names the other agents
offered the lead and why others were passed by (paused, away, at a cap), which a realtor's view of the
lead does not show (`visible_timeline`). The dry-run is theirs too, and changes nothing anywhere.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from leadflow_crm_api.adapters.leads import agent_names
from leadflow_crm_api.adapters.router_api import RouterApi, segment
from leadflow_crm_api.deps import AccountLeads, Caller, Db, Id, Router
from leadflow_crm_api.domain.routing_info import (
    Decision,
    DryRunAnswer,
    DryRunRequest,
    LeadRouting,
    NamedAgent,
    agents_named,
    decision_of,
    shown,
)
from leadflow_crm_api.domain.rules_and_availability import rule_refusals
from leadflow_crm_api.errors import Forbidden, NotFound, Unavailable
from leadflow_crm_api.use_cases.settings import _account, _refuse, admin_settings
from leadflow_shared.account_config import RoutingFields

UNREADABLE = "The router's answer could not be read; try again."


async def lead_routing(
    account_id: Id, leads: AccountLeads, caller: Caller, db: Db, router: Router, lead_id: Id
) -> LeadRouting:
    """Why the lead went where it did: its latest routing decisions (the router keeps five), oldest first,
    each with the rules tried and why they did not apply, who was chosen, skipped and why, who waits, and
    the rotation. For brokers and admins of the lead's account."""
    if not caller.sees_whole_account:
        raise Forbidden("Routing info is for brokers and admins of the account.")
    if await leads.get(lead_id) is None:
        raise NotFound("No such lead.")
    return LeadRouting(lead_id=lead_id, decisions=await _decisions(account_id, db, router, lead_id))


async def _decisions(account_id: str, db: Db, router: RouterApi, lead_id: str) -> list[Decision]:
    try:
        path = f"/internal/v1/accounts/{segment(account_id)}/leads/{uuid.UUID(lead_id)}/routing"
        answer = await router.get(path, missing="No routing decisions for this lead.")
    except (ValueError, NotFound):  # a lead the router never routed (not a lead id of its own): none
        return []
    try:
        decisions = [decision_of(d) for d in answer.get("decisions", [])]
    except (ValueError, TypeError) as exc:
        raise Unavailable(UNREADABLE) from exc
    names = await agent_names(db, agents_named(decisions))
    return [shown(d, names) for d in decisions]


async def dry_run(account_id: Id, caller: Caller, db: Db, router: Router, body: DryRunRequest) -> DryRunAnswer:
    """How a lead would be routed now, by the saved routing rules or a draft (`rules`), from where the
    rotations, counts and caps stand: the decision, the status and who it would go to. Changes nothing: no
    lead, no offer, no rotation moves. A draft is checked as a save is (422 naming the rule)."""
    account = await _account(admin_settings(account_id, caller, db))
    sent: dict[str, Any] = {"lead_id": str(body.lead_id)} if body.lead_id else {}
    if body.lead is not None:
        try:
            sent["lead"] = body.lead.summary().model_dump(mode="json")
        except ValidationError as exc:  # a value the body's fields took that the contract does not
            raise RequestValidationError(
                [{**e, "loc": ("body", "lead", *e["loc"])} for e in exc.errors(include_input=False)]
            ) from exc
    if body.rules is not None:
        refusals = rule_refusals(body.rules, RoutingFields.of(account).roster)
        _refuse([(("rules", *where), reason) for where, reason in refusals])
        sent["rules"] = body.rules.model_dump(mode="json", exclude={"version"})
    answer = await router.post(
        f"/internal/v1/accounts/{segment(account_id)}/routing/dry-run",
        sent,
        missing="No such lead or account for routing.",
    )
    return await _named_answer(db, answer)


async def _named_answer(db: Db, answer: dict[str, Any]) -> DryRunAnswer:
    try:
        decision = decision_of(answer["decision"])
        holder = answer.get("holder")
        offered = [str(a) for a in answer.get("offered_to", [])]
        status = str(answer["status"])
    except (KeyError, TypeError, ValueError) as exc:
        raise Unavailable(UNREADABLE) from exc
    names = await agent_names(db, agents_named([decision]) | set(offered) | ({str(holder)} if holder else set()))
    return DryRunAnswer(
        decision=shown(decision, names),
        status=status,
        holder=NamedAgent(agent_id=str(holder), name=names.get(str(holder))) if holder else None,
        offered_to=[NamedAgent(agent_id=a, name=names.get(a)) for a in offered],
    )
