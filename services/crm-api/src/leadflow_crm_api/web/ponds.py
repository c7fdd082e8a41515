"""The Ponds page (issue 15, item 5): the account's ponds and the leads waiting in them, over the JSON API's use
case (`use_cases.ponds`). An agent sees the leads it holds an offer of, each with the lead page's Claim button
(the same form, posted to the lead's actions: the ordinary claim), or instead why the router would refuse its
claim now (paused, at a cap...: asked of the router once per page); brokers and admins see every pond's leads and
who can claim them. Each pond shows its first page; "Next page" shows that pond alone, page by page. A router
that does not answer (within PAGE_ROUTER_TIMEOUT) leaves the Claim buttons, with a notice.

Its router is mounted through web/leads.py's (under /app), beside the claim it posts to."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse

from leadflow_crm_api.adapters.router_api import RouterApi
from leadflow_crm_api.domain.principal import Principal
from leadflow_crm_api.errors import NotFound
from leadflow_crm_api.use_cases import ponds as ponds_uc
from leadflow_crm_api.use_cases.ponds import PondLeads, PondSummary, RouterCheck
from leadflow_crm_api.web.common import caller_of, db_of, path_id, render, settings_of

PAGE_SIZE = 50
PAGE_ROUTER_TIMEOUT = 2.0  # seconds: a router that hangs delays the page by at most this (as the lead page's)
router = APIRouter(include_in_schema=False)  # included by web/leads.py's router, which has the /app prefix


@router.get("/accounts/{account_id}/ponds")
async def ponds_page(request: Request, account_id: str) -> HTMLResponse:
    caller, _ = await caller_of(request)
    account_id, db, now = path_id(account_id), db_of(request), datetime.now(UTC)
    check = RouterCheck(RouterApi.of(settings_of(request), timeout=PAGE_ROUTER_TIMEOUT), caller)
    overview = await ponds_uc.list_ponds(account_id, caller, db, check, now=now)
    chosen = request.query_params.get("pond") or None  # one pond, paged ("Next page")
    cursor = request.query_params.get("cursor") or None if chosen else None
    groups: list[tuple[PondSummary, PondLeads | None, str | None]] = []
    for pond in overview.ponds:
        if chosen is not None and pond.pond_id != chosen:
            continue
        page = None
        if pond.open_leads or chosen is not None:
            page = await pond_page(db, caller, account_id, pond.pond_id, check, cursor=cursor, now=now)
        more = page.next_cursor if page is not None else None
        next_url = f"{request.url.path}?{urlencode({'pond': pond.pond_id, 'cursor': more})}" if more else None
        groups.append((pond, page, next_url))
    return render(
        request, "ponds.html", caller=caller, title="Ponds", account_id=account_id, groups=groups, chosen=chosen,
        check=check.asked,
    )  # fmt: skip


async def pond_page(
    db: ponds_uc.Db,
    caller: Principal,
    account_id: str,
    pond_id: str,
    check: RouterCheck,
    *,
    cursor: str | None,
    now: datetime,
) -> PondLeads | None:
    """The pond's page at `cursor` (a stale one: its first page); None when the pond is gone since the overview
    counted it (its rules changed, its last lead left): the pond is then shown empty, not the page a 404."""
    try:
        try:
            return await ponds_uc.pond_leads(
                account_id, caller, db, pond_id, check, limit=PAGE_SIZE, cursor=cursor, now=now
            )
        except RequestValidationError:  # a stale cursor
            return await ponds_uc.pond_leads(
                account_id, caller, db, pond_id, check, limit=PAGE_SIZE, cursor=None, now=now
            )
    except NotFound:
        return None
