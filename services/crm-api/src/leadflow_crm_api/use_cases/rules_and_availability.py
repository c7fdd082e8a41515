"""Routing rules and agent availability (issue 15): the use cases the JSON routes register
(routes/settings.py) and the web pages call.

Routing rules are the account's, for its brokers and admins. Each PUT replaces the rule set whole and says
which version it was based on: a compare-and-set on the account document stores it as the next version, so
of two changes based on the same version one is saved and the other is a 409. An agent's availability is its
own to change, and its account's brokers' and admins'. Every change is audited (`crm_settings_audit`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Query
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_crm_api.adapters.settings import AccountSettings
from leadflow_crm_api.adapters.settings_audit import SettingsAudit
from leadflow_crm_api.deps import Caller, Db, Id
from leadflow_crm_api.domain.principal import Principal
from leadflow_crm_api.domain.rules_and_availability import (
    AVAILABILITY_SETTING,
    RULES_SETTING,
    Availability,
    AvailabilityHistory,
    RoutingRules,
    SettingsChange,
    SettingsHistory,
    availability_fields,
    capacity_refusals,
    change_of,
    rule_refusals,
    stored_availability,
    stored_rules,
    window_refusals,
)
from leadflow_crm_api.errors import Forbidden, NotFound, VersionConflict
from leadflow_crm_api.use_cases.settings import _account, _refuse, admin_settings
from leadflow_shared.account_config import RoutingFields
from leadflow_shared.mongo import Document

HISTORY_LIMIT = 20
HistoryLimit = Annotated[int, Query(ge=1, le=100, description="How many changes.")]


@dataclass(frozen=True, slots=True)
class Changes:
    """Where a change is read and written, who makes it, and where it is audited."""

    settings: AccountSettings
    audit: SettingsAudit
    by_user_id: str
    agent_id: str = ""  # availability: whose


# Routing rules


async def rules_scope(account_id: Id, caller: Caller, db: Db) -> Changes:
    """The account's routing rules, for its brokers and admins only."""
    return Changes(admin_settings(account_id, caller, db), SettingsAudit(db, account_id), caller.sub)


Rules = Annotated[Changes, Depends(rules_scope)]


async def get_routing_rules(scope: Rules) -> RoutingRules:
    """The stored rule set with its version; the default rule alone (version 0) when there is none. A stored
    set the router cannot read is shown as what the router then does, the default rule, at its version."""
    stored = stored_rules(await _account(scope.settings))
    return RoutingRules.model_validate(stored.rules.model_dump() | {"version": stored.version})


async def put_routing_rules(scope: Rules, body: RoutingRules) -> RoutingRules:
    account = await _account(scope.settings)
    stored = stored_rules(account)
    if body.version != stored.version:
        raise VersionConflict(
            f"The routing rules changed since version {body.version}: they are at version {stored.version}. "
            "Nothing was saved; reload them, make your change again and save."
        )
    _refuse(rule_refusals(body, RoutingFields.of(account).roster))
    saved = body.model_copy(update={"version": stored.version + 1})
    document = saved.model_dump(mode="json")
    if not await scope.settings.set_account_if(stored.guard, {RULES_SETTING: document}):
        await _account(scope.settings)  # deleted meanwhile: 404
        raise VersionConflict(
            "Another change of the routing rules was saved at the same time. Nothing was saved; reload them, "
            "make your change again and save."
        )
    await scope.audit.record(
        RULES_SETTING,
        scope.by_user_id,
        datetime.now(UTC),
        version_before=stored.version,
        version_after=saved.version,
        document=document,
    )
    return saved


async def _history(scope: Changes, setting: str, limit: int) -> list[SettingsChange]:
    """The last `limit` audited changes of `setting` in the scope (its agent's, for availability), newest first."""
    return [change_of(doc) for doc in await scope.audit.latest(setting, limit, scope.agent_id or None)]


async def routing_rules_history(scope: Rules, limit: HistoryLimit = HISTORY_LIMIT) -> SettingsHistory:
    await _account(scope.settings)
    return SettingsHistory(items=await _history(scope, RULES_SETTING, limit))


# Availability


async def _agent_scope(
    settings: AccountSettings, caller: Principal, db: AsyncDatabase[Document], agent_id: str
) -> Changes:
    await _account(settings)
    return Changes(settings, SettingsAudit(db, settings.account_id), caller.sub, agent_id)


async def availability_scope(account_id: Id, agent_id: Id, caller: Caller, db: Db) -> Changes:
    """An agent changes its own availability; a broker or admin that of any agent of its account."""
    if account_id != caller.account_id:
        raise Forbidden("The token does not grant access to this account.")
    if agent_id != caller.sub and not caller.sees_whole_account:
        raise Forbidden("Agents change only their own availability.")
    return await _agent_scope(AccountSettings(db, account_id), caller, db, agent_id)


async def my_availability_scope(caller: Caller, db: Db) -> Changes:
    """The calling agent's own availability, in the account its token is for."""
    return await _agent_scope(AccountSettings(db, caller.account_id), caller, db, caller.sub)


AgentChanges = Annotated[Changes, Depends(availability_scope)]
MyChanges = Annotated[Changes, Depends(my_availability_scope)]


async def _agent(scope: Changes) -> dict[str, Any]:
    agent = await scope.settings.agent(scope.agent_id)
    if agent is None:
        raise NotFound("No such agent in this account.")
    return agent


async def get_availability(scope: AgentChanges) -> Availability:
    return stored_availability(await _agent(scope))


async def put_availability(scope: AgentChanges, body: Availability) -> Availability:
    """Sets all five fields on the agent's document (`paused`, `away`, `working_hours`, `holidays`, `caps`).
    Refused (422): a cap of 0 for the last agent without one, working-hours windows that overlap."""
    stored = stored_availability(await _agent(scope))
    roster = RoutingFields.of(await _account(scope.settings)).roster
    _refuse(
        capacity_refusals(scope.agent_id, body, await scope.settings.agents(), roster) + window_refusals(body, stored)
    )
    fields = availability_fields(body)
    if not await scope.settings.set_agent(scope.agent_id, fields):
        raise NotFound("No such agent in this account.")
    now = datetime.now(UTC)
    await scope.audit.record(AVAILABILITY_SETTING, scope.by_user_id, now, agent_id=scope.agent_id, document=fields)
    return body


async def get_my_availability(scope: MyChanges) -> Availability:
    return await get_availability(scope)


async def put_my_availability(scope: MyChanges, body: Availability) -> Availability:
    return await put_availability(scope, body)


async def availability_history(scope: AgentChanges, limit: HistoryLimit = HISTORY_LIMIT) -> AvailabilityHistory:
    await _agent(scope)
    return AvailabilityHistory(items=await _history(scope, AVAILABILITY_SETTING, limit))


async def my_availability_history(scope: MyChanges, limit: HistoryLimit = HISTORY_LIMIT) -> AvailabilityHistory:
    return await availability_history(scope, limit)
