"""Distribution by hand and returns (T4): the JSON routes, each one a use case of `use_cases.distribution`."""

from __future__ import annotations

from fastapi import APIRouter, status

from leadflow_crm_api.use_cases import distribution

router = APIRouter(tags=["brokerage CRM"])

router.add_api_route(
    "/v1/accounts/{account_id}/distributions",
    distribution.distribute,
    methods=["POST"],
    status_code=status.HTTP_202_ACCEPTED,
)
router.add_api_route(
    "/v1/accounts/{account_id}/leads/{lead_id}/return",
    distribution.return_lead,
    methods=["POST"],
    status_code=status.HTTP_202_ACCEPTED,
    tags=["realtor CRM"],
)
