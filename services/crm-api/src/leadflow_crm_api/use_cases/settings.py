"""Account settings (V4) read by the router and the notifier: the use cases the JSON routes register
(routes/settings.py) and the web pages call.

Each PUT replaces one setting as a whole, after checking it against the account's agents,
groups and sources; the checks that need stored data report through the same 422
`invalid_params` as schema errors. Only brokers/admins of the account change account
settings; anyone may manage their own notification preferences.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends
from fastapi.exceptions import RequestValidationError

from leadflow_crm_api.adapters.settings import AccountSettings
from leadflow_crm_api.deps import Caller, Commands, Db, DigestDefaultHour, Id, Members
from leadflow_crm_api.domain.offices import TeamStatus
from leadflow_crm_api.domain.settings import (
    AgentRoundRobin,
    AgentStatus,
    DigestSchedule,
    LeadGroup,
    LeadGroups,
    LeadSource,
    LeadSources,
    NotificationPreferences,
    OfferNotices,
    PauseSchedule,
    PauseWindow,
    RoundRobinApproval,
    RoutingSettings,
    Violation,
    check_groups,
    check_roster,
    check_sources,
    groups_of,
    known_group_names,
    preferences_from,
)
from leadflow_crm_api.errors import Forbidden, NotFound, Unavailable
from leadflow_crm_api.publishing import publish_or_unavailable
from leadflow_shared.account_config import NoticeFields, RoutingFields, pause_windows, time_zone_of
from leadflow_shared.events.commands import (
    AgentDeparture,
    ReleaseAgentLeads,
    ReleaseAgentLeadsPayload,
)

BASE = "/v1/accounts/{account_id}"
ROUTER_CACHE = (
    " The router caches account settings for up to 5 s (`ROUTER_CONFIG_CACHE_SECONDS`), so a change "
    "applies to leads routed from at most 5 s after the response."
)
NOTIFIER_CACHE = (
    " The notifier caches recipients for up to 5 s (`NOTIFIER_DIRECTORY_CACHE_SECONDS`), so a change "
    "applies to notifications sent from at most 5 s after the response."
)


def admin_settings(account_id: Id, caller: Caller, db: Db) -> AccountSettings:
    """The account's settings, for its brokers and admins only."""
    if account_id != caller.account_id:
        raise Forbidden("The token does not grant access to this account.")
    if not caller.sees_whole_account:
        raise Forbidden("Account settings are for brokers and admins.")
    return AccountSettings(db, account_id)


Settings = Annotated[AccountSettings, Depends(admin_settings)]


async def _account(settings: AccountSettings) -> dict[str, Any]:
    account = await settings.account()
    if account is None:
        raise NotFound("No such account.")
    return account


async def _set_account(settings: AccountSettings, fields: dict[str, Any]) -> None:
    if not await settings.set_account(fields):  # deleted since it was read
        raise NotFound("No such account.")


def _refuse(violations: list[Violation]) -> None:
    """Report data-dependent failures exactly like schema failures (problems.py: name + reason)."""
    if violations:
        raise RequestValidationError(
            [{"loc": ("body", *loc), "msg": reason, "type": "value_error"} for loc, reason in violations]
        )


# Routing: roster order and round robin (R5, R6)


async def get_routing(settings: Settings) -> RoutingSettings:
    routing = RoutingFields.of(await _account(settings))
    return RoutingSettings(
        round_robin=routing.round_robin,
        roster=routing.roster,
        departed_agent_leads=routing.departed_agent_leads,
        allow_direct_to_user=routing.allow_direct_to_user,
    )


async def put_routing(settings: Settings, body: RoutingSettings) -> RoutingSettings:
    await _account(settings)
    _refuse(check_roster(body.roster, [a["_id"] for a in await settings.agents()]))
    fields = {
        "round_robin": body.round_robin,
        "roster": body.roster,
        "departed_agent_leads": body.departed_agent_leads,
        "allow_direct_to_user": body.allow_direct_to_user,
    }
    await _set_account(settings, fields)
    return body


async def get_digest(settings: Settings, default_hour: DigestDefaultHour) -> DigestSchedule:
    """When the digest goes out, as the notifier reads it (a stored value it cannot use: its fallback)."""
    fields = NoticeFields.of(await _account(settings))
    hour = default_hour if fields.digest_hour is None else fields.digest_hour
    return DigestSchedule(hour=hour, time_zone=fields.time_zone)


async def put_digest(settings: Settings, body: DigestSchedule) -> DigestSchedule:
    account = await _account(settings)
    await _set_account(settings, {"digest_hour": body.hour})
    return DigestSchedule(hour=body.hour, time_zone=NoticeFields.of(account).time_zone)


async def get_offer_notices(settings: Settings) -> OfferNotices:
    """Whether offers show the contact, as the notifier reads it (a stored value it cannot use: hidden for races)."""
    return OfferNotices(contact_details=NoticeFields.of(await _account(settings)).contact_details)


async def put_offer_notices(settings: Settings, body: OfferNotices) -> OfferNotices:
    await _account(settings)
    await _set_account(settings, {"offer_contact_details": body.contact_details.value})
    return body


async def get_round_robin(settings: Settings, agent_id: Id) -> AgentRoundRobin:
    await _account(settings)
    agent = await settings.agent(agent_id)
    if agent is None:
        raise NotFound("No such agent in this account.")
    return AgentRoundRobin(agent_id=agent_id, approved=bool(agent.get("round_robin", True)))


async def put_round_robin(settings: Settings, agent_id: Id, body: RoundRobinApproval) -> AgentRoundRobin:
    await _account(settings)
    if not await settings.set_agent(agent_id, {"round_robin": body.approved}):
        raise NotFound("No such agent in this account.")
    return AgentRoundRobin(agent_id=agent_id, approved=body.approved)


async def get_agent_status(settings: Settings, agent_id: Id) -> AgentStatus:
    await _account(settings)
    agent = await settings.agent(agent_id)
    if agent is None:
        raise NotFound("No such agent in this account.")
    return AgentStatus(status=agent.get("status", "active"))


async def put_agent_status(
    settings: Settings, caller: Caller, commands: Commands, members: Members, agent_id: Id, body: AgentStatus
) -> AgentStatus:
    """Any status but `active` takes the agent out of routing: its open offers are withdrawn and the
    leads it holds are released as `departed_agent_leads` says (the router applies the command). An
    inactive agent's token is refused from its next request on (S1, decision 0079)."""
    await _account(settings)
    if (before := await settings.agent(agent_id)) is None:
        raise NotFound("No such agent in this account.")
    active = body.status is TeamStatus.ACTIVE
    # Saved first, then told: the router releases the agent's leads once every replica's account snapshot has read
    # the status (`RouterService._settled`), so none gives it a lead after the release (helper 188's review: told
    # first, a snapshot read before the save gave the agent who left new leads, and nothing took them back).
    if not await settings.set_agent(agent_id, {"status": body.status.value, "active": active}):
        raise NotFound("No such agent in this account.")
    if not active:
        release = ReleaseAgentLeads.create(
            account_id=settings.account_id,
            occurred_at=datetime.now(UTC),
            payload=ReleaseAgentLeadsPayload(
                agent_id=agent_id, reason=AgentDeparture.DEACTIVATED, by_user_id=caller.sub
            ),
        )
        try:
            await publish_or_unavailable(commands, release, detail="The status was not changed; try again.")
        except Unavailable:  # Kafka refused: the status goes back as it was, and the client retries
            was = {"status": before.get("status", TeamStatus.ACTIVE.value), "active": before.get("active", True)}
            await settings.set_agent(agent_id, was)
            raise
    await members.recheck(agent_id)
    return body


# Lead sources (R3, R6-R8, R11) and lead groups (R6)


async def get_lead_sources(settings: Settings) -> LeadSources:
    account = await _account(settings)
    known = LeadSource.model_fields  # tolerate fields this API does not manage
    stored = account.get("sources", [])
    return LeadSources(sources=[LeadSource.model_validate({k: v for k, v in s.items() if k in known}) for s in stored])


async def put_lead_sources(settings: Settings, body: LeadSources) -> LeadSources:
    account = await _account(settings)
    _refuse(check_sources(body.sources, known_group_names(account, await settings.agents())))
    await _set_account(settings, {"sources": [s.model_dump(mode="json") for s in body.sources]})
    return body


async def get_lead_groups(settings: Settings) -> LeadGroups:
    account = await _account(settings)
    agents = await settings.agents()
    return LeadGroups(
        groups=[
            LeadGroup(name=name, agent_ids=[a["_id"] for a in agents if name in a.get("lead_groups", [])])
            for name in known_group_names(account, agents)
        ]
    )


async def put_lead_groups(settings: Settings, body: LeadGroups) -> LeadGroups:
    account = await _account(settings)
    agents = await settings.agents()
    _refuse(check_groups(body.groups, [a["_id"] for a in agents], account.get("sources", [])))
    # Membership lives on the agents (the router reads `lead_groups` there). Several documents,
    # not atomic: a failed PUT can leave some agents updated; repeating it converges.
    for agent in agents:
        groups = groups_of(agent["_id"], body.groups)
        if agent.get("lead_groups", []) != groups:
            await settings.set_agent(agent["_id"], {"lead_groups": groups})
    await _set_account(settings, {"lead_group_names": [g.name for g in body.groups]})
    return body


# Pause schedule (R10)


async def get_pause_schedule(settings: Settings) -> PauseSchedule:
    account = await _account(settings)
    return PauseSchedule(
        time_zone=time_zone_of(account),  # as the router reads it
        windows=[
            PauseWindow(weekdays=w.weekdays, start=f"{w.start:%H:%M}", end=f"{w.end:%H:%M}")
            for w in pause_windows(account)
        ],
    )


async def put_pause_schedule(settings: Settings, body: PauseSchedule) -> PauseSchedule:
    account = await _account(settings)
    fields: dict[str, Any] = {"pause": [w.model_dump() for w in body.windows]}
    if body.time_zone is not None:
        fields["time_zone"] = body.time_zone
    await _set_account(settings, fields)
    return body.model_copy(update={"time_zone": body.time_zone or time_zone_of(account)})


# Notification preferences (the notifier's `notifier_preferences`)


async def preferences_scope(account_id: Id, user_id: Id, caller: Caller, db: Db) -> AccountSettings:
    """A realtor manages only its own preferences; a broker/admin those of any user of its account."""
    if account_id != caller.account_id:
        raise Forbidden("The token does not grant access to this account.")
    if user_id != caller.sub and not caller.sees_whole_account:
        raise Forbidden("Realtors manage only their own notification preferences.")
    settings = AccountSettings(db, account_id)
    await _account(settings)
    if await settings.agent(user_id) is None and (
        await settings.staff_member(user_id) is None or await settings.agent_elsewhere(user_id)
    ):
        # Preferences of someone the notifier cannot reach would be accepted and never used; another account's
        # agent is that account's to reach (a staff record here naming it gives no hold on it, decision 0076).
        raise NotFound(
            "No such user in this account. Add an admin or staff member who is not an agent with "
            "PUT /v1/accounts/{account_id}/staff/{user_id} first, so notifications can reach them."
        )
    # The user is this account's: preferences another account wrote for its id (when it was nobody's) have no
    # hold on it, here (`AccountSettings.preferences`, `set_preferences`) as in the notifier (decision 0076).
    return settings


Preferences = Annotated[AccountSettings, Depends(preferences_scope)]


async def get_notifications(settings: Preferences, user_id: Id) -> NotificationPreferences:
    return preferences_from(await settings.preferences(user_id))


async def put_notifications(
    settings: Preferences, user_id: Id, body: NotificationPreferences
) -> NotificationPreferences:
    await settings.set_preferences(user_id, body.model_dump(mode="json"))
    return body
