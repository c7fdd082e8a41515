"""ClientBAY's Lead Management dashboard: who is next per lead source, the open offers and their deadlines,
and today's leads by source and outcome (in the office's time zone). Live like the lists."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, time
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from leadflow_crm_api.adapters.router_api import RouterApi
from leadflow_crm_api.adapters.settings import AccountSettings
from leadflow_crm_api.domain.views import LeadQuery, LeadSort, LeadStatus
from leadflow_crm_api.use_cases import leads as leads_uc
from leadflow_crm_api.use_cases import next_up as next_up_uc
from leadflow_crm_api.web.common import PREFIX, caller_of, db_of, path_id, render, settings_of
from leadflow_crm_api.web.leads import PAGE_ROUTER_TIMEOUT
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
    # The sources asked a few at a time with the page's timeout, none after the first failure: a router that hangs
    # delays the dashboard by one short timeout, not one per source (helper 175). The rest of it still shows.
    router_api = RouterApi.of(settings_of(request), timeout=PAGE_ROUTER_TIMEOUT)
    found, failed = await next_up_uc.next_per_source(router_api, db, account_id, sources)
    answered = {item.source for item in found}
    next_up: list[dict[str, object]] = [item.model_dump() for item in found]
    if failed is not None:
        next_up += [{"source": name, "error": failed.detail} for name in sources if name not in answered]
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
