"""Routing rules a person can see end to end (issue 11.11), through intake, the router, the notifier
and crm-api: R3 with and without auto-accept, R4 when the agent left after intake, R6's eligibility
filters and its fairness over 400 leads while the broker's approvals change, R9's expiries and
fall-back with the broker's email, R10's deadline moved past a pause, R11's fee on the lead and in
the list. R10 across a daylight-saving change is in test_r10_clock.py (its router runs on a test clock)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from partner_messages import signed

from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import eventually
from leadflow_shared import topics
from leadflow_shared.events.inbound import received_event_id

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

FAIR = "fair-realty"  # round robin, race of 1, four agents
FAIR_AGENTS = ["fair-ann", "fair-bo", "fair-cy", "fair-di"]
LATE = "late-realty"  # round robin, 10 s claim windows, a referral fee: offers expire, then fall back
LATE_AGENTS = ["late-broker", "late-eve"]
PICK = "pick-realty"  # round robin; a source with a lead group and an office, a listing source without auto-accept
LEFT = "left-realty"  # round robin off: a pre-assigned lead whose agent leaves before the router sees it


@pytest.fixture(scope="module", autouse=True)
def offices(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> None:
    def agents(ids: list[str], domain: str) -> list[dict[str, Any]]:
        return [{"agent_id": a, "name": a.replace("-", " ").title(), "email": f"{a}@{domain}"} for a in ids]

    path = tmp_path_factory.mktemp("rules") / "accounts.json"
    path.write_text(
        json.dumps(
            {
                "accounts": [
                    {
                        "account_id": FAIR,
                        "name": "Fair Realty",
                        "round_robin": True,
                        "agents": agents(FAIR_AGENTS, "fair.example"),
                        "roster": FAIR_AGENTS,
                        "sources": [{"name": "Website", "race_count": 1, "claim_window_seconds": 3600}],
                    },
                    {
                        "account_id": LATE,
                        "name": "Late Realty",
                        "round_robin": True,
                        "agents": agents(LATE_AGENTS, "late.example"),
                        "roster": LATE_AGENTS,
                        "sources": [
                            {"name": "Website", "race_count": 1, "claim_window_seconds": 10, "referral_fee_percent": 25}
                        ],
                    },
                    {
                        "account_id": PICK,
                        "name": "Pick Realty",
                        "round_robin": True,
                        "agents": [
                            {
                                "agent_id": "pick-broker",
                                "name": "Pia Broker",
                                "email": "pia@pick.example",
                                "offices": ["north"],
                            },
                            {
                                "agent_id": "pick-new",
                                "name": "Ned New",
                                "email": "ned@pick.example",
                                "offices": ["north"],
                                "lead_groups": ["luxury"],
                                "invitation_accepted": False,
                            },
                            {
                                "agent_id": "pick-south",
                                "name": "Sue South",
                                "email": "sue@pick.example",
                                "offices": ["south"],
                                "lead_groups": ["luxury"],
                            },
                            {
                                "agent_id": "pick-north",
                                "name": "Nora North",
                                "email": "nora@pick.example",
                                "offices": ["north"],
                                "lead_groups": ["luxury"],
                            },
                        ],
                        "roster": ["pick-broker", "pick-new", "pick-south", "pick-north"],
                        "sources": [
                            # Offered to every eligible agent at once (a race of 5): the offers name exactly who passed.
                            {
                                "name": "Luxury",
                                "lead_group": "luxury",
                                "offices": ["north"],
                                "race_count": 5,
                                "claim_window_seconds": 3600,
                            },
                            {
                                "name": "Listing inquiry",
                                "auto_accept": False,
                                "direct_period_seconds": 10,
                                "race_count": 1,
                                "claim_window_seconds": 3600,
                                "referral_fee_percent": 30,
                            },
                        ],
                    },
                    {
                        "account_id": LEFT,
                        "name": "Left Realty",
                        "round_robin": False,
                        "agents": agents(["left-broker", "left-lou"], "left.example"),
                        "roster": ["left-broker", "left-lou"],
                        "sources": [{"name": "HomeFinder", "referral_fee_percent": 35}],
                    },
                ]
            }
        )
    )
    stack.seed(path)


async def post_leads(stack: Stack, account_id: str, count: int, tag: str) -> list[str]:
    """`count` leads of distinct contacts, posted to intake's website form as a site would, 8 at a time."""
    ids: list[str] = []
    limit = asyncio.Semaphore(8)
    async with httpx.AsyncClient(base_url=stack.url("intake"), timeout=30) as intake:

        async def one(n: int) -> None:
            body = {
                "account_id": account_id,
                "first_name": "Fay",
                "last_name": f"Q{tag}",
                "email": f"fay.{n}.{tag}@example.com",
            }
            async with limit:
                response = await intake.post("/v1/leads", json=body)
            assert response.status_code == 202, response.text
            ids.append(str(response.json()["event_id"]))

        async with asyncio.TaskGroup() as posts:  # one failing cancels the rest before the client closes
            for n in range(count):
                posts.create_task(one(n))
    return ids


async def post_to_intake(stack: Stack, path: str, body: dict[str, Any]) -> str:
    """One lead posted to intake as a site would; its lead id."""
    async with httpx.AsyncClient() as intake:
        posted = await intake.post(f"{stack.url('intake')}{path}", json=body)
    assert posted.status_code == 202, posted.text
    return str(posted.json()["event_id"])


async def holders(client: httpx.AsyncClient, headers: dict[str, str], account_id: str, tag: str) -> dict[str, Any]:
    """Lead id -> row, for every lead of `account_id` whose contact's name holds `tag`."""
    rows: dict[str, Any] = {}
    cursor: str | None = None
    while True:
        params = {"q": f"q{tag}", "limit": "200", **({"cursor": cursor} if cursor else {})}
        page = (await client.get(f"/v1/accounts/{account_id}/leads", headers=headers, params=params)).json()
        rows |= {r["lead_id"]: r for r in page["items"]}
        cursor = page["next_cursor"]
        if not cursor:
            return rows


async def test_r6_shares_400_leads_evenly_and_follows_the_brokers_approvals(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    admin = stack.auth("fair-admin", "admin", FAIR)

    async def offered_to(ids: list[str], tag: str) -> Counter[str]:
        async def all_offered() -> dict[str, Any] | None:
            rows = await holders(client, admin, FAIR, tag)
            ready = len(rows) == len(ids) and all(r["status"] == "offered" for r in rows.values())
            return rows if ready else None

        rows = await eventually(all_offered, timeout=180, what=f"{len(ids)} leads offered")
        assert rows is not None
        limit = asyncio.Semaphore(16)

        async def offered(lead_id: str) -> str:
            async with limit:
                detail = (await client.get(f"/v1/accounts/{FAIR}/leads/{lead_id}", headers=admin)).json()
            [offer] = detail["open_offers"]
            return str(offer["agent_id"])

        return Counter(await asyncio.gather(*(offered(lead_id) for lead_id in ids)))

    first_tag = uuid.uuid4().hex[:6]
    first = await offered_to(await post_leads(stack, FAIR, 200, first_tag), first_tag)
    assert set(first) == set(FAIR_AGENTS)
    assert max(first.values()) - min(first.values()) <= 1, f"R6 shares evenly: {first}"

    # The broker withdraws one agent's approval: the router's settings cache lets it go within 5 s.
    withdrawn = await client.put(
        f"/v1/accounts/{FAIR}/agents/fair-di/round-robin", headers=admin, json={"approved": False}
    )
    assert withdrawn.status_code == 200
    # The router caches settings up to 5 s: probe leads until a whole rotation (4 in a row) passes
    # fair-di by, which a stale cache could not do.
    without_di = 0

    async def cache_passed() -> bool:
        nonlocal without_di
        probe_tag = uuid.uuid4().hex[:6]
        probe = await post_leads(stack, FAIR, 1, probe_tag)
        got = await offered_to(probe, probe_tag)
        without_di = 0 if "fair-di" in got else without_di + 1
        return without_di >= len(FAIR_AGENTS)

    await eventually(cache_passed, timeout=60, what="the withdrawn approval in effect")
    second_tag = uuid.uuid4().hex[:6]
    second = await offered_to(await post_leads(stack, FAIR, 200, second_tag), second_tag)
    assert "fair-di" not in second, "an agent without approval gets no round-robin lead"
    assert max(second.values()) - min(second.values()) <= 1, f"R6 shares evenly among the rest: {second}"


async def test_r9_offers_expire_to_the_next_agent_then_fall_back_and_the_broker_is_emailed(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    tag = uuid.uuid4().hex[:6]
    [lead_id] = await post_leads(stack, LATE, 1, tag)
    admin = stack.auth("late-admin", "admin", LATE)

    async def fell_back() -> dict[str, Any] | None:
        detail = (await client.get(f"/v1/accounts/{LATE}/leads/{lead_id}", headers=admin)).json()
        return detail if detail.get("status") == "fell_back" else None

    detail = await eventually(fell_back, timeout=60, what="both 10 s offers expired and the fall-back")
    assert detail is not None
    kinds = [(e["type"], e["agent_id"]) for e in detail["timeline"]]
    offers = [a for t, a in kinds if t == "LeadOffered"]
    assert sorted(offers) == sorted(LATE_AGENTS), "each eligible agent had it once"
    assert [a for t, a in kinds if t == "OfferExpired"] == offers, "each offer expired in turn"
    assert detail["owner_agent_id"] == "late-broker", "R9: back to roster position 1"
    # R11: a general lead carries the source's fee, on the lead and in the list.
    assert detail["referral_fee_percent"] == 25.0
    [row] = (await holders(client, admin, LATE, tag)).values()
    assert row["referral_fee_percent"] == 25.0

    def broker_told() -> list[EmailMessage]:
        assert stack.mail is not None
        return [
            m
            for m in stack.mail.received()
            if m["X-Envelope-To"] == "late-broker@late.example"
            and m["X-Leadflow-Lead-Id"] == lead_id
            and str(m["Subject"]) == "Lead back in the broker pool"
        ]

    await eventually(broker_told, what="the broker's fall-back email")


async def test_r3_an_inquiry_on_an_agents_own_listing_is_that_agents_at_once(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    body = {
        "account_id": FAIR,
        "first_name": "Lisa",
        "phone": "(212) 555-0142",
        "listing_id": "MLS-77",
        "listing_agent_id": "fair-cy",
        "message": "Is it still available?",
    }
    lead_id = await post_to_intake(stack, "/v1/listing-inquiries", body)
    admin = stack.auth("fair-admin", "admin", FAIR)

    async def held() -> dict[str, Any] | None:
        detail = (await client.get(f"/v1/accounts/{FAIR}/leads/{lead_id}", headers=admin)).json()
        return detail if detail.get("owner_agent_id") and has_entry(detail, "LeadAssigned") else None

    detail = await eventually(held, what="the listing inquiry routed, on the timeline too")
    assert detail is not None
    assert (detail["owner_agent_id"], detail["listing_id"]) == ("fair-cy", "MLS-77")
    assert detail["referral_fee_percent"] == 0.0, "R11: no fee on a direct-to-user lead"
    assert detail["timeline"][0]["summary"].startswith("Assigned to fair-cy (direct_to_user): R3:")


async def test_r10_an_offer_made_inside_a_pause_gets_its_whole_window_after_the_pause(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    # The broker sets a pause around now through crm-api; the next lead is offered at once, and its
    # claim deadline is the pause's end plus the source's whole window (here 10 s).
    admin = stack.auth("late-admin", "admin", LATE)
    now = datetime.now(UTC)
    start, end = (now - timedelta(hours=1)), (now + timedelta(hours=2))
    window = {"weekdays": list(range(7)), "start": f"{start:%H}:00", "end": f"{end:%H}:00"}
    url = f"/v1/accounts/{LATE}/settings/pause-schedule"
    paused = await client.put(url, headers=admin, json={"time_zone": "UTC", "windows": [window]})
    assert paused.status_code == 200, paused.text
    try:
        pause_end = end.replace(minute=0, second=0, microsecond=0)

        async def offered_after_the_pause() -> bool:
            # Posted until one routes under the new schedule (the router caches settings up to 5 s).
            tag = uuid.uuid4().hex[:6]
            [lead_id] = await post_leads(stack, LATE, 1, tag)

            async def offer() -> list[Any] | None:
                detail = (await client.get(f"/v1/accounts/{LATE}/leads/{lead_id}", headers=admin)).json()
                return detail.get("open_offers") or None

            [first] = await eventually(offer, what="the first offer, made at once inside the pause")
            return datetime.fromisoformat(first["deadline"]) == pause_end + timedelta(seconds=10)

        assert await eventually(offered_after_the_pause, timeout=30, what="a deadline moved past the pause")
    finally:
        await client.put(url, headers=admin, json={"windows": []})


async def detail_of(client: httpx.AsyncClient, headers: dict[str, str], account_id: str, lead_id: str) -> Any:
    return (await client.get(f"/v1/accounts/{account_id}/leads/{lead_id}", headers=headers)).json()


def has_entry(detail: dict[str, Any], kind: str) -> bool:
    """Whether the lead's timeline has an entry of `kind`: crm-api writes an event's row change first and its
    timeline entry last, so a wait on the row alone may read the timeline without it."""
    return any(e["type"] == kind for e in detail.get("timeline", []))


async def test_r6_eligibility_a_sources_lead_group_and_offices_and_unaccepted_invitations(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    # The Luxury source takes agents of its lead group in its office who accepted the invitation: of the
    # four, only pick-north passes, so a race of five still offers the lead to pick-north alone.
    body = {
        "account_id": PICK,
        "first_name": "Lux",
        "email": f"lux-{uuid.uuid4().hex[:8]}@example.com",
        "source_name": "Luxury",
    }
    lead_id = await post_to_intake(stack, "/v1/leads", body)
    admin = stack.auth("pick-admin", "admin", PICK)

    async def offered() -> Any:
        detail = await detail_of(client, admin, PICK, lead_id)
        return detail if detail.get("open_offers") and has_entry(detail, "LeadOffered") else None

    detail = await eventually(offered, what="the Luxury lead offered, on the timeline too")
    assert [o["agent_id"] for o in detail["open_offers"]] == ["pick-north"]
    [offer_line] = [e["summary"] for e in detail["timeline"] if e["type"] == "LeadOffered"]
    # The explanation a broker reads names why each other agent was passed by.
    assert "pick-broker: not in lead group 'luxury'" in offer_line, offer_line
    assert "pick-new: invitation not accepted" in offer_line, offer_line
    assert "pick-south: not in the source's offices" in offer_line, offer_line


async def test_r3_without_auto_accept_the_listing_agent_alone_has_the_direct_period_then_it_is_general(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    body = {
        "account_id": PICK,
        "first_name": "Lior",
        "email": f"lior-{uuid.uuid4().hex[:8]}@example.com",
        "listing_id": "MLS-9",
        "listing_agent_id": "pick-south",
    }
    lead_id = await post_to_intake(stack, "/v1/listing-inquiries", body)
    admin = stack.auth("pick-admin", "admin", PICK)

    async def first_offer() -> Any:
        detail = await detail_of(client, admin, PICK, lead_id)
        return detail["open_offers"] if detail.get("open_offers") and has_entry(detail, "LeadOffered") else None

    [direct] = await eventually(first_offer, what="the listing agent's offer, on the timeline too")
    assert direct["agent_id"] == "pick-south", "only the listing agent, during the direct period"
    detail = await detail_of(client, admin, PICK, lead_id)
    [made] = [e for e in detail["timeline"] if e["type"] == "LeadOffered"]
    period = datetime.fromisoformat(direct["deadline"]) - datetime.fromisoformat(made["occurred_at"])
    assert period == timedelta(seconds=10), "the source's direct period, not its 1 h claim window"
    assert detail["referral_fee_percent"] == 0.0, "no fee while it is the listing agent's"

    async def general() -> Any:
        detail = await detail_of(client, admin, PICK, lead_id)
        offers = [e for e in detail["timeline"] if e["type"] == "LeadOffered"]
        return detail if len(offers) == 2 and detail.get("open_offers") else None

    detail = await eventually(general, timeout=45, what="the direct period over and a general offer")
    kinds = [(e["type"], e["agent_id"]) for e in detail["timeline"]]
    assert ("OfferExpired", "pick-south") in kinds, "the direct period ended unclaimed"
    [second] = detail["open_offers"]
    assert second["agent_id"] != "pick-south", "the general route skips the agent who had it"
    assert detail["referral_fee_percent"] == 30.0, "R11: general after the direct period, so the source's fee"


async def test_r4_a_pre_assigned_lead_whose_agent_left_before_routing_is_routed_as_general(
    stack: Stack, client: httpx.AsyncClient, wait_for_record: Any
) -> None:
    # Intake accepts a partner's lead pre-assigned to left-lou while the router is down; the broker then
    # takes left-lou off the roster. The router, back up, must not give the lead to someone who left.
    event_id = uuid.uuid4()
    lead = {
        "event_id": str(event_id), "type": "LeadSubmitted", "schema_version": 1, "account_id": LEFT,
        "occurred_at": datetime.now(UTC).isoformat(), "correlation_id": str(event_id),
        "payload": {"contact": {"first_name": "Lea", "email": f"lea-{event_id.hex[:8]}@example.com"},
                    "source": {"partner": "homefinder", "name": "HomeFinder", "assigned_agent_id": "left-lou"}},
    }  # fmt: skip
    lead_id = str(received_event_id(event_id, LEFT))
    admin = stack.auth("left-admin", "admin", LEFT)
    stack.services["router"].stop()
    try:
        producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all")
        await producer.start()
        try:
            value = json.dumps(lead).encode()
            await producer.send_and_wait(
                topics.LEADS_INBOUND, value, key=LEFT.encode(), headers=signed(value, LEFT.encode())
            )
        finally:
            await producer.stop()
        await wait_for_record(topics.LEADS_INTAKE, lambda r: lead_id.encode() in r.value)
        left = await client.put(
            f"/v1/accounts/{LEFT}/settings/routing",
            headers=admin,
            json={"round_robin": False, "roster": ["left-broker"]},
        )
        assert left.status_code == 200, left.text
    finally:
        stack.start_service("router")
        stack.wait_ready("router", timeout=90)

    async def routed() -> Any:
        detail = await detail_of(client, admin, LEFT, lead_id)
        return detail if detail.get("owner_agent_id") and has_entry(detail, "LeadAssigned") else None

    detail = await eventually(routed, timeout=60, what="the lead routed after the restart, on the timeline too")
    assert detail["owner_agent_id"] == "left-broker", "R5: roster position 1, not the agent who left"
    assert detail["referral_fee_percent"] == 35.0, "routed as a general lead, with the source's fee"
    [assigned] = [e["summary"] for e in detail["timeline"] if e["type"] == "LeadAssigned"]
    assert "R4 not applied" in assigned, assigned
    assert "'left-lou', who is not an agent of this account" in assigned, assigned
