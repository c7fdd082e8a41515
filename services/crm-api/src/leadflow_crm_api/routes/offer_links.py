"""One-click accept links from offer notices (issue 11.6): the link is the authority, no bearer token.

`GET` answers a small page that posts itself (a person's one click claims; a mail scanner that
fetches links runs no script and claims nothing); `POST` claims for the agent the offer was made
to, once: a used, ended or foreign link claims nothing and says why, as a page or as problem+json.
"""

from __future__ import annotations

import asyncio
import html
import logging
import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pymongo.errors import DuplicateKeyError

from leadflow_crm_api.adapters.leads import LeadViews
from leadflow_crm_api.deps import Db
from leadflow_crm_api.domain.claims import ClaimOutlook, LinkClaim, claim_answer, link_offer_ended
from leadflow_crm_api.domain.lead_row import LeadRow, OfferLink
from leadflow_crm_api.domain.views import activity_entry
from leadflow_crm_api.errors import CrmApiError, LinkRefused, LinkUnknown, Unavailable
from leadflow_crm_api.problems import problem
from leadflow_crm_api.publishing import publish_or_unavailable
from leadflow_crm_api.web.common import STATIC
from leadflow_shared.collections import CRM_USED_OFFER_LINKS
from leadflow_shared.events.activity import ActivityAction, LeadActivity, LeadActivityPayload
from leadflow_shared.offer_links import InvalidOfferLink, link_id_from

log = logging.getLogger(__name__)
router = APIRouter(tags=["offer links"])

PROJECTION_WAIT_SECONDS = 5.0  # how long a click waits for crm-api to project the offer its notice announced
PROJECTION_POLL_SECONDS = 0.1  # then doubling
Token = Annotated[str, Path(min_length=40, max_length=48, pattern=r"^[A-Za-z0-9_-]+$")]


# Its style and script are static files: crm-api's pages run no inline script or style (decision 0092).
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{title}</title><link rel="stylesheet" href="{static}/offer-link.css">{script}</head>
<body><h1>{title}</h1>{body}</body></html>"""
_SUBMIT = f'<script src="{STATIC}/offer-link.js" defer></script>'  # posts the page's form once it is parsed


def _page(title: str, body: str, status: int, *, script: str = "") -> HTMLResponse:
    """A page of the link's (`Cache-Control: no-store` and the policy: `answer_headers.py`)."""
    return HTMLResponse(
        _PAGE.format(title=html.escape(title), body=body, script=script, static=STATIC),
        status_code=status,
        headers={"Referrer-Policy": "no-referrer"},  # its URL is the link: sent to no other site
    )


@router.get("/v1/offer-links/{token}", response_class=HTMLResponse)
async def open_link(token: Token) -> HTMLResponse:
    """The page behind an offer notice's accept link: it claims as soon as it opens (one click)."""
    action = html.escape(f"/v1/offer-links/{token}")
    body = (
        f'<form id="accept" method="post" action="{action}"><p>Claiming the lead for you…</p>'
        '<noscript><button type="submit">Accept the lead</button></noscript></form>'
    )
    return _page("Accepting the lead", body, 200, script=_SUBMIT)


@router.post("/v1/offer-links/{token}", status_code=202, response_model=LinkClaim)
async def use_link(token: Token, request: Request, db: Db) -> Response:
    """Claim the offered lead for its agent (R8), once; otherwise say why nothing was claimed."""
    wants_page = "text/html" in request.headers.get("accept", "")
    try:
        outcome, lead_page = await _claim(token, request, db)
    except CrmApiError as exc:
        if wants_page:
            return _page("Nothing was claimed", f"<p>{html.escape(exc.detail)}</p>", exc.status)
        return problem(exc.status, exc.slug, exc.detail)
    if wants_page:
        link = f'<p><a href="{html.escape(lead_page)}">Open the lead</a></p>'
        return _page("Claim sent", f"<p>{html.escape(outcome)}</p>{link}", 202)
    claimed = LinkClaim(claim=ClaimOutlook.REQUESTED, detail=outcome)
    return JSONResponse(claimed.model_dump(mode="json"), status_code=202)


async def _linked_offer(views: LeadViews, link_id: str) -> tuple[LeadRow | None, OfferLink | None]:
    """The lead and the offer a genuine link names. The notice can reach the agent before crm-api has projected
    its offer (the notifier and the projection read the same event apart): a click then waits for it a while
    rather than being told to try again."""
    loop = asyncio.get_running_loop()
    gives_up, pause = loop.time() + PROJECTION_WAIT_SECONDS, PROJECTION_POLL_SECONDS
    while True:
        row = await views.by_offer_link(link_id)
        link = None if row is None else row.offer_link(link_id)
        if link is not None or loop.time() >= gives_up:
            return row, link
        await asyncio.sleep(min(pause, max(0.0, gives_up - loop.time())))
        pause *= 2  # a few reads, not one each 200 ms: the lookup reads a whole collection


async def _claim(token: str, request: Request, db: Db) -> tuple[str, str]:
    """What the claim says, and the lead's page in the web app."""
    settings = request.app.state.runtime.settings
    try:
        link_id = link_id_from(token, settings.offer_link_secret)
    except InvalidOfferLink as exc:
        raise LinkUnknown("This is not a valid accept link; open the lead in leadflow instead.") from exc
    views = LeadViews(db)
    row, link = await _linked_offer(views, link_id)
    if row is None or link is None:
        raise LinkUnknown("This offer is not known (yet): try again in a moment, or open the lead in leadflow.")
    agent = link.agent_id
    if not await request.app.state.callers.is_member(agent, row.account_id):
        # Left the office or made inactive since the notice (decision 0079): the router would refuse the claim,
        # so the link is not spent on it and the agent is told now, not "claim sent".
        raise LinkRefused("Nothing was claimed: you are no longer an active agent of this office.")
    now = datetime.now(UTC)
    answer = claim_answer(row, [], caller=agent, claims=True, now=now, names={})
    if answer.outlook is not ClaimOutlook.REQUESTED:
        if answer.outlook is ClaimOutlook.HOLDER:
            raise LinkRefused("You hold this lead already.")
        timeline = await views.timeline_of(row.lead_id)
        answer = claim_answer(row, timeline, caller=agent, claims=True, now=now, names={})
        raise LinkRefused(f"Nothing was claimed: {answer.detail}")
    if link_offer_ended(row, link, now):
        raise LinkRefused(
            "Nothing was claimed: this link's offer ended, and you were offered the lead again since. "
            "Use the newer offer's link, or open the lead in leadflow."
        )
    try:  # single use, before anything is published: a second click finds the link used
        used = {"_id": link_id, "lead_id": row.lead_id, "agent_id": agent, "at": now}
        await db[CRM_USED_OFFER_LINKS].insert_one(used)
    except DuplicateKeyError as exc:
        raise LinkRefused("This link was used already; open the lead in leadflow to see who holds it.") from exc
    activity = LeadActivity.create(
        account_id=row.account_id,
        occurred_at=now,
        payload=LeadActivityPayload(  # the link's own round: only that offer is claimed (decision 0087)
            lead_id=uuid.UUID(row.lead_id), agent_id=agent, action=ActivityAction.ACCEPT, offer_round=link.offer_round
        ),
    )
    try:
        await publish_or_unavailable(
            request.app.state.publish_activity, activity, detail="The claim could not be sent; click the link again."
        )
    except Unavailable:
        await db[CRM_USED_OFFER_LINKS].delete_one({"_id": link_id})  # not used after all: the next click may claim
        raise
    await views.record(activity_entry(
        event_id=str(activity.event_id), lead_id=row.lead_id, account_id=row.account_id, agent_id=agent,
        action=ActivityAction.ACCEPT.value, occurred_at=now,
    ))  # fmt: skip
    log.info("offer accepted by link", extra={"lead_id": row.lead_id})
    page = f"/app/accounts/{row.account_id}/leads/{row.lead_id}"
    said = f"{answer.detail} The lead is yours unless another agent claimed it first; its page shows who holds it."
    return said, page
