"""Office-to-office transfers (T2), lead profiles, labels and offices: the JSON routes, each one a use case
of `use_cases.offices` (decision 0020)."""

from __future__ import annotations

from fastapi import APIRouter, status

from leadflow_crm_api.use_cases import offices

router = APIRouter()

router.add_api_route(
    "/v1/accounts/{account_id}/leads/{lead_id}/profile",
    offices.put_profile,
    methods=["PUT"],
    tags=["brokerage CRM", "realtor CRM"],
)
router.add_api_route("/v1/accounts/{account_id}/labels", offices.list_labels, methods=["GET"], tags=["brokerage CRM"])
router.add_api_route(
    "/v1/accounts/{account_id}/offices", offices.list_offices, methods=["GET"], tags=["office transfers"]
)
router.add_api_route(
    "/v1/accounts/{account_id}/office-transfers",
    offices.transfer_to_office,
    methods=["POST"],
    tags=["office transfers"],
    status_code=status.HTTP_202_ACCEPTED,
)
router.add_api_route(
    "/v1/accounts/{account_id}/office-transfers/bulk",
    offices.transfer_many_to_office,
    methods=["POST"],
    tags=["office transfers"],
    status_code=status.HTTP_202_ACCEPTED,
)
router.add_api_route(
    "/v1/accounts/{account_id}/office-transfers/{transfer_id}",
    offices.get_office_transfer,
    methods=["GET"],
    tags=["office transfers"],
)
