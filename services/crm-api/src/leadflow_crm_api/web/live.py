"""Live pages: a page hears that its data changed (server-sent events), then fetches itself again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from leadflow_crm_api.errors import Unauthenticated
from leadflow_crm_api.use_cases import leads as leads_uc
from leadflow_crm_api.web.common import PREFIX, caller_of, callers_of, db_of, path_id
from leadflow_shared.http import draining

LIVE_POLL_SECONDS = 0.25  # a change shows on open pages within about a second (issue 12.4)
# A realtor's list reads its `$or` scope a branch at a time (26-37 ms of nx-27017's CPU at a few thousand leads, the
# whole `$or` 80-90: docs/performance.md): asked once a second, still "within about a second".
REALTOR_LIST_POLL_SECONDS = 1.0
LIVE_STREAM_SECONDS = 300  # then the browser reconnects, and the session is checked again
router = APIRouter(prefix=PREFIX, include_in_schema=False)


@router.get("/accounts/{account_id}/live")
async def account_live(request: Request, account_id: str) -> StreamingResponse:
    caller, token = await caller_of(request)
    leads = leads_uc.brokerage_leads(caller, db_of(request), path_id(account_id))
    return _stream(request, token, leads.change_mark)


@router.get("/my/live")
async def realtor_live(request: Request) -> StreamingResponse:
    caller, token = await caller_of(request)
    leads = leads_uc.realtor_leads(caller, db_of(request))
    return _stream(request, token, leads.change_mark, every=REALTOR_LIST_POLL_SECONDS)


@router.get("/accounts/{account_id}/leads/{lead_id}/live")
async def lead_live(request: Request, account_id: str, lead_id: str) -> StreamingResponse:
    caller, token = await caller_of(request)
    leads = leads_uc.account_leads(caller, db_of(request), path_id(account_id))
    lead_id = path_id(lead_id)

    async def mark() -> str:
        return await leads.lead_mark(lead_id)

    return _stream(request, token, mark)


def _stream(
    request: Request, token: str, mark: Callable[[], Awaitable[str]], *, every: float = LIVE_POLL_SECONDS
) -> StreamingResponse:
    """Server-sent events: `changed` whenever `mark()` (asked `every` seconds) differs from what the page was built
    from; the stream ends once its session's token no longer admits its caller: expired, signed out, or its user
    no longer who it says (an agent made inactive or moved, an admin removed: decisions 0079, 0105)."""

    # What the page was built from (`since`, taken before its data was read), so a change between the
    # page's render and this stream is still announced. A reconnect may announce one change twice.
    since = request.query_params.get("since")

    async def events() -> AsyncIterator[str]:
        seen = since[:300] if since is not None else await mark()
        yield "retry: 1000\n\n"
        loop = asyncio.get_running_loop()
        ends, beat = loop.time() + LIVE_STREAM_SECONDS, loop.time()
        callers = callers_of(request)
        # A replica shutting down ends its streams at once: the browser reconnects to one that stays.
        while loop.time() < ends and not draining(request) and not await request.is_disconnected():
            await asyncio.sleep(every)
            try:
                await callers.of(token)
            except Unauthenticated:
                return  # the browser reconnects, and that request is refused
            now = await mark()
            if now != seen:
                seen = now
                yield "event: changed\ndata: {}\n\n"
            elif loop.time() - beat > 15:
                beat = loop.time()
                yield ": still here\n\n"  # keeps proxies from closing an idle stream

    return StreamingResponse(events(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"})
