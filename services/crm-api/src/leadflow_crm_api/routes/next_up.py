"""ClientBAY's "who is next", per lead source and per routing rule: the JSON routes, the use cases of
`use_cases.next_up` as they are."""

from __future__ import annotations

from fastapi import APIRouter

from leadflow_crm_api.use_cases import next_up

router = APIRouter(tags=["settings"])
router.add_api_route("/v1/accounts/{account_id}/routing/next", next_up.who_is_next, methods=["GET"])
router.add_api_route(
    "/v1/accounts/{account_id}/routing/rules/{rule_id}/next", next_up.who_is_next_by_rule, methods=["GET"]
)
