"""Account settings (V4): the JSON routes, each one a use case of `use_cases.settings`."""

from __future__ import annotations

from fastapi import APIRouter

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
