""" "Why this agent" and the dry-run (issue 15): the JSON routes, `use_cases.routing_info` as they are."""

from __future__ import annotations

from fastapi import APIRouter

from leadflow_crm_api.use_cases import routing_info

router = APIRouter()
router.add_api_route(
    "/v1/accounts/{account_id}/leads/{lead_id}/routing",
    routing_info.lead_routing,
    methods=["GET"],
    tags=["brokerage CRM"],
)
router.add_api_route(
    "/v1/accounts/{account_id}/routing/dry-run", routing_info.dry_run, methods=["POST"], tags=["settings"]
)
