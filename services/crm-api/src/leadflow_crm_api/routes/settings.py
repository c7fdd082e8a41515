"""Account settings (V4): the JSON routes, each one a use case of `use_cases.settings`, or for routing rules
and availability (issue 15) of `use_cases.rules_and_availability`."""

from __future__ import annotations

from fastapi import APIRouter

from leadflow_crm_api.use_cases import rules_and_availability as rules
from leadflow_crm_api.use_cases import settings
from leadflow_crm_api.use_cases.settings import BASE, NOTIFIER_CACHE, ROUTER_CACHE

router = APIRouter(tags=["settings"])

router.add_api_route(
    f"{BASE}/settings/routing",
    settings.get_routing,
    methods=["GET"],
    description="Round robin on/off and the roster, position 1 first.",
)
router.add_api_route(
    f"{BASE}/settings/routing",
    settings.put_routing,
    methods=["PUT"],
    description="Replace round robin on/off and the roster; the roster names only agents of the account."
    + ROUTER_CACHE,
)
router.add_api_route(
    f"{BASE}/settings/digest",
    settings.get_digest,
    methods=["GET"],
    description="When the account's daily digest goes out.",
)
router.add_api_route(
    f"{BASE}/settings/digest",
    settings.put_digest,
    methods=["PUT"],
    description=(
        "Set the hour the daily digest of new leads goes out, in the office's time zone (it covers the "
        "day before that hour). The notifier reads it at each digest run."
    ),
)
router.add_api_route(
    f"{BASE}/settings/offer-notices",
    settings.get_offer_notices,
    methods=["GET"],
    description="What offer notices show before the lead is claimed.",
)
router.add_api_route(
    f"{BASE}/settings/offer-notices",
    settings.put_offer_notices,
    methods=["PUT"],
    description="Choose whether offer notices show the contact's email and phone before a claim." + NOTIFIER_CACHE,
)
router.add_api_route(
    f"{BASE}/agents/{{agent_id}}/round-robin",
    settings.get_round_robin,
    methods=["GET"],
    description="Whether the agent is approved for round robin.",
)
router.add_api_route(
    f"{BASE}/agents/{{agent_id}}/round-robin",
    settings.put_round_robin,
    methods=["PUT"],
    description="Approve the agent for round robin, or withdraw the approval (R6)." + ROUTER_CACHE,
)
router.add_api_route(
    f"{BASE}/agents/{{agent_id}}/status",
    settings.get_agent_status,
    methods=["GET"],
    description="The team member's status (active, onboarding...).",
)
router.add_api_route(
    f"{BASE}/agents/{{agent_id}}/status",
    settings.put_agent_status,
    methods=["PUT"],
    description="Set the team member's status; e.g. `active` once a member moved from another office is onboarded."
    + ROUTER_CACHE,
)
router.add_api_route(
    f"{BASE}/settings/lead-sources",
    settings.get_lead_sources,
    methods=["GET"],
    description="The account's lead sources.",
)
router.add_api_route(
    f"{BASE}/settings/lead-sources",
    settings.put_lead_sources,
    methods=["PUT"],
    description="Replace the lead sources; names are unique and a `lead_group` must be one of the account's."
    + ROUTER_CACHE,
)
router.add_api_route(
    f"{BASE}/settings/lead-groups",
    settings.get_lead_groups,
    methods=["GET"],
    description="The account's lead groups and their members.",
)
router.add_api_route(
    f"{BASE}/settings/lead-groups",
    settings.put_lead_groups,
    methods=["PUT"],
    description=(
        "Replace the lead groups and their members (agents of the account); a group a lead source uses "
        "cannot be removed."
    )
    + ROUTER_CACHE,
)
router.add_api_route(
    f"{BASE}/settings/pause-schedule",
    settings.get_pause_schedule,
    methods=["GET"],
    description="When reassignments wait, in the account's time zone.",
)
router.add_api_route(
    f"{BASE}/settings/pause-schedule",
    settings.put_pause_schedule,
    methods=["PUT"],
    description="Replace the pause windows, and the account's time zone when given (daylight saving follows the zone)."
    + ROUTER_CACHE,
)
router.add_api_route(
    f"{BASE}/settings/notifications/{{user_id}}",
    settings.get_notifications,
    methods=["GET"],
    description="A user's notification preferences.",
)
router.add_api_route(
    f"{BASE}/settings/notifications/{{user_id}}",
    settings.put_notifications,
    methods=["PUT"],
    description=(
        "Replace a user's channels, quiet hours and digest subscription (the push token and a staff "
        "member's contact details are kept)."
    )
    + NOTIFIER_CACHE,
)
router.add_api_route(
    f"{BASE}/settings/routing-rules",
    rules.get_routing_rules,
    methods=["GET"],
    description="The routing rule set (docs/routing-rules.md) and its version; the default rule alone, version 0, "
    "when the account has none.",
)
router.add_api_route(
    f"{BASE}/settings/routing-rules",
    rules.put_routing_rules,
    methods=["PUT"],
    description=(
        "Replace the routing rule set. `version` is the version the change is based on (from the GET): when the "
        "rules changed since, the answer is 409 and nothing is saved. Saved, the rules are at that version + 1. "
        "Refused (422, naming the field) as the rule set's schema says, and when an action names agents not on "
        "the roster. Every change is kept in the history."
    )
    + ROUTER_CACHE,
)
router.add_api_route(
    f"{BASE}/settings/routing-rules/history",
    rules.routing_rules_history,
    methods=["GET"],
    description="The last changes of the routing rules, newest first: who, when, the versions and the rule set saved.",
)
AVAILABILITY = (
    "When the agent takes new leads: `paused`, time `away` (start included, end not), weekly `working_hours` and "
    "`holidays` in the agent's time zone (none: any time), and lead `caps` per day, week and month."
)
AVAILABILITY_PUT = (
    " Replaces all five fields. Refused (422, naming the field): an `away` that does not end after it starts, a "
    "weekday outside 0-6, working-hours windows that overlap (at the later window's weekday, both said; hours saved "
    "unchanged are not checked again), a negative cap, and a cap of 0 that would leave every agent who takes "
    "round-robin leads (on the roster, active, approved) with a cap of 0. Every change is audited "
    "(`.../availability/history`)."
)
router.add_api_route(
    "/v1/agents/me/availability",
    rules.get_my_availability,
    methods=["GET"],
    description="The calling agent's availability in the account its token is for. " + AVAILABILITY,
)
router.add_api_route(
    "/v1/agents/me/availability",
    rules.put_my_availability,
    methods=["PUT"],
    description="Change the calling agent's availability." + AVAILABILITY_PUT + ROUTER_CACHE,
)
router.add_api_route(
    f"{BASE}/agents/{{agent_id}}/availability",
    rules.get_availability,
    methods=["GET"],
    description="An agent's availability (brokers and admins; an agent its own). " + AVAILABILITY,
)
router.add_api_route(
    f"{BASE}/agents/{{agent_id}}/availability",
    rules.put_availability,
    methods=["PUT"],
    description="Change an agent's availability (brokers and admins; an agent its own)."
    + AVAILABILITY_PUT
    + ROUTER_CACHE,
)
HISTORY = (
    "The last changes of the agent's availability, newest first (`limit`, at most 100): who changed it, when, and "
    "the five fields as saved."
)
router.add_api_route(
    "/v1/agents/me/availability/history",
    rules.my_availability_history,
    methods=["GET"],
    description="The calling agent's own availability changes. " + HISTORY,
)
router.add_api_route(
    f"{BASE}/agents/{{agent_id}}/availability/history",
    rules.availability_history,
    methods=["GET"],
    description="An agent's availability changes (brokers and admins; an agent its own). " + HISTORY,
)
