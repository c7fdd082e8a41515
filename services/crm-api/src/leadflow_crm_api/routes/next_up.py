"""ClientBAY's "who is next": the JSON route, the use case `use_cases.next_up.who_is_next` as it is."""

from __future__ import annotations

from fastapi import APIRouter

from leadflow_crm_api.use_cases import next_up

router = APIRouter(tags=["settings"])
router.add_api_route("/v1/accounts/{account_id}/routing/next", next_up.who_is_next, methods=["GET"])
