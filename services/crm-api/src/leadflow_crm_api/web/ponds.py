"""The Ponds page (issue 15, item 5): the account's ponds and the leads waiting in them, over the JSON API's use
case (`use_cases.ponds`). An agent sees the leads it can claim, each with the lead page's Claim button (the same
form, posted to the lead's actions: the ordinary claim); brokers and admins see every pond's leads and who can
claim them. Each pond shows its first page; "Next page" shows that pond alone, page by page.

Its router is mounted through web/leads.py's (under /app), beside the claim it posts to."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse

from leadflow_crm_api.use_cases import ponds as ponds_uc
from leadflow_crm_api.use_cases.ponds import PondLeads, PondSummary
from leadflow_crm_api.web.common import caller_of, db_of, path_id, render

PAGE_SIZE = 50
router = APIRouter(include_in_schema=False)  # included by web/leads.py's router, which has the /app prefix


@router.get("/accounts/{account_id}/ponds")
async def ponds_page(request: Request, account_id: str) -> HTMLResponse:
    caller, _ = caller_of(request)
    account_id, db, now = path_id(account_id), db_of(request), datetime.now(UTC)
    overview = await ponds_uc.list_ponds(account_id, caller, db)
    chosen = request.query_params.get("pond") or None  # one pond, paged ("Next page")
    cursor = request.query_params.get("cursor") or None if chosen else None
    groups: list[tuple[PondSummary, PondLeads | None, str | None]] = []
    for pond in overview.ponds:
        if chosen is not None and pond.pond_id != chosen:
            continue
        page = None
        if pond.open_leads or chosen is not None:
            try:
                page = await ponds_uc.pond_leads(
                    account_id, caller, db, pond.pond_id, limit=PAGE_SIZE, cursor=cursor, now=now
                )
            except RequestValidationError:  # a stale cursor: the pond's first page instead
                page = await ponds_uc.pond_leads(
                    account_id, caller, db, pond.pond_id, limit=PAGE_SIZE, cursor=None, now=now
                )
        more = page.next_cursor if page is not None else None
        next_url = f"{request.url.path}?{urlencode({'pond': pond.pond_id, 'cursor': more})}" if more else None
        groups.append((pond, page, next_url))
    return render(
        request, "ponds.html", caller=caller, title="Ponds", account_id=account_id, groups=groups, chosen=chosen
    )
