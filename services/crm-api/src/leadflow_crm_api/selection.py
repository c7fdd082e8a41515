"""The leads a bulk request names, or all a filter of the brokerage list matches (distribution by
hand, office transfers in bulk), and how a refusal of some of them is answered."""

from __future__ import annotations

from typing import NoReturn

from fastapi.exceptions import RequestValidationError

from leadflow_crm_api.adapters.leads import ScopedLeads
from leadflow_crm_api.domain.distribution import MAX_LEADS, LeadFilter
from leadflow_crm_api.domain.lead_row import LeadRow


async def selected_leads(
    leads: ScopedLeads, lead_ids: list[str] | None, lead_filter: LeadFilter | None, *, limit: int = MAX_LEADS
) -> tuple[list[str], dict[str, LeadRow]]:
    """(the lead ids, in order and once each; their rows in scope, by id). A filter matching more than
    `limit` leads is refused (422 `filter`)."""
    if lead_ids is not None:
        wanted = list(dict.fromkeys(lead_ids))
        return wanted, await leads.get_many(wanted)
    assert lead_filter is not None  # noqa: S101 (the request models require one of the two)
    found = await leads.matching(lead_filter.query(), limit + 1)
    if len(found) > limit:
        invalid("filter", f"matches more than {limit} leads; narrow it")
    return [r.lead_id for r in found], {r.lead_id: r for r in found}


def refuse_named(lead_ids: list[str] | None, refusals: dict[str, str]) -> None:
    """Named leads that cannot go refuse the whole request (422 naming each `lead_ids.<i>`); a filter's
    are only skipped."""
    if lead_ids is not None and refusals:
        raise RequestValidationError([
            {"loc": ("body", "lead_ids", lead_ids.index(i)), "msg": why, "type": "value_error"}
            for i, why in refusals.items()
        ])  # fmt: skip


def invalid(field: str, reason: str) -> NoReturn:
    raise RequestValidationError([{"loc": ("body", field), "msg": reason, "type": "value_error"}])
