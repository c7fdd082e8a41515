"""ClientBAY's Lead Management dashboard: who is next per lead source, the open offers and their deadlines,
and today's leads by source and outcome (in the office's time zone). Live like the lists."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, time
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from leadflow_crm_api.adapters.settings import AccountSettings
from leadflow_crm_api.domain.views import LeadQuery, LeadSort, LeadStatus
from leadflow_crm_api.errors import CrmApiError
from leadflow_crm_api.use_cases import leads as leads_uc
from leadflow_crm_api.use_cases import next_up as next_up_uc
from leadflow_crm_api.web.common import PREFIX, caller_of, db_of, path_id, render
from leadflow_shared.account_config import time_zone_of
from leadflow_shared.clock import epoch_ms

router = APIRouter(prefix=PREFIX, include_in_schema=False)
OPEN_OFFERS_SHOWN = 50
TODAY_READ = 5_000  # leads of today counted at most (a larger day says "at least")


@router.get("/accounts/{account_id}/dashboard")
async def dashboard(request: Request, account_id: str) -> HTMLResponse:
    caller, _ = await caller_of(request)
    account_id = path_id(account_id)
    db = db_of(request)
    leads = leads_uc.brokerage_leads(caller, db, account_id)
    since = await leads.change_mark()
    account = await AccountSettings(db, account_id).account() or {}
    sources = [s["name"] for s in account.get("sources", [])] or ["Website"]
    next_up: list[dict[str, object]] = []
    for name in sources:
        try:
            found = await next_up_uc.who_is_next(account_id, caller, db, request, source=name, group=None)
            next_up.extend(item.model_dump() for item in found.items)
        except CrmApiError as exc:  # the router did not answer: the rest of the dashboard still shows
            next_up.append({"source": name, "error": exc.detail})
    offered = await leads.find_page(
        LeadQuery(status=LeadStatus.OFFERED, sort=LeadSort.ACTIVITY_DESC), limit=OPEN_OFFERS_SHOWN, after=None
    )
    zone = ZoneInfo(time_zone_of(account))
    midnight = datetime.combine(datetime.now(zone).date(), time(0), zone)
    today = await leads.matching(LeadQuery(created_from_ms=epoch_ms(midnight.astimezone(UTC))), TODAY_READ)
    by_source: Counter[tuple[str, str]] = Counter((r.source, r.status) for r in today)
    outcomes = sorted({status for _, status in by_source})
    table = {src: {o: by_source[(src, o)] for o in outcomes} for src in sorted({s for s, _ in by_source})}
    return render(
        request,
        "dashboard.html",
        caller=caller,
        title="Lead Management",
        account_id=account_id,
        next_up=next_up,
        offered=offered,
        outcomes=outcomes,
        table=table,
        total=len(today),
        capped=len(today) >= TODAY_READ,
        today=midnight,
        live=f"{PREFIX}/accounts/{account_id}/live?{urlencode({'since': since})}",
    )
