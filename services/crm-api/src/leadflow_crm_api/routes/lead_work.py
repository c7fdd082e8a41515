"""Working a lead: its CRM status and its users (issue 11.8, 11.9): the JSON routes, each one a use case of
`use_cases.lead_work`."""

from __future__ import annotations

from fastapi import APIRouter

from leadflow_crm_api.use_cases import lead_work

router = APIRouter(tags=["brokerage CRM", "realtor CRM"])
router.add_api_route("/v1/accounts/{account_id}/leads/{lead_id}/crm-status", lead_work.set_crm_status, methods=["PUT"])
router.add_api_route("/v1/accounts/{account_id}/leads/{lead_id}/users", lead_work.assign_users, methods=["PUT"])
