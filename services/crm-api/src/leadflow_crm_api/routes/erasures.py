"""Erasing a contact (decision 0050): the JSON route of `use_cases.erasures`."""

from __future__ import annotations

from fastapi import APIRouter, status

from leadflow_crm_api.use_cases import erasures

router = APIRouter(tags=["brokerage CRM"])
router.add_api_route(
    "/v1/accounts/{account_id}/erasures",
    erasures.request_erasure,
    methods=["POST"],
    status_code=status.HTTP_202_ACCEPTED,
)
