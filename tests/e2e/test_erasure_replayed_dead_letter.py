"""A dead letter written before a contact's erasure, replayed after it, does not bring the contact back (decision
0106; helper 172's review, which failed before).

An SRE follows the runbook (docs/operations.md, LeadflowDeadLetters: "fix, then `leadflow-ops dlq replay`"). Meanwhile
the contact asked to be forgotten. The router had dead-lettered one of the contact's inquiries (a `LeadReceived` on
`leads.intake.v1.dlq`): it never had a record, so the erasure (which finds leads by the contact index and by record)
could not find it, and `router_erasures` could not name it. The replay republished it; the router routed it as a new
lead and every store held the erased person again. Now the erasure marks the contact's keys (their hashes), and the
router takes an inquiry made before the erasure unrouted.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import eventually, holders_of, metric, ops_json, records_until
from leadflow_shared import topics

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

RUN = uuid.uuid4().hex[:6]
ACCOUNT = f"acct-erase-replay-{RUN}"
BROKER, AGENT = f"erp-bea-{RUN}", f"erp-ana-{RUN}"


@pytest.fixture(scope="module", autouse=True)
def accounts(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> None:
    agents = [BROKER, AGENT]
    config = {"accounts": [{
        "account_id": ACCOUNT, "name": "Erase Replay", "round_robin": True, "time_zone": "UTC",
        "agents": [{"agent_id": a, "name": a, "email": f"{a}@erase-replay.example"} for a in agents],
        "roster": agents, "default_source": {"race_count": 1, "claim_window_seconds": 900},
    }]}  # fmt: skip
    path = tmp_path_factory.mktemp("erase-replay") / "accounts.json"
    path.write_text(json.dumps(config))
    stack.seed(path)


async def test_a_dead_letter_of_an_inquiry_from_before_an_erasure_replayed_after_it_does_not_bring_the_contact_back(
    stack: Stack, db: AsyncDatabase[dict[str, Any]]
) -> None:
    tag = uuid.uuid4().hex[:8]
    first, last, email = f"Gdpr{tag}", f"Forget{tag}", f"gdpr.{tag}@mail.example"
    traces = {first, last, email, first.lower(), last.lower(), email.split("@")[0]}
    body = {"account_id": ACCOUNT, "first_name": first, "last_name": last, "email": email,
            "message": f"loft please {tag}"}  # fmt: skip
    async with httpx.AsyncClient(timeout=10) as intake:
        answer = await intake.post(f"{stack.url('intake')}/v1/leads", json=body)
    assert answer.status_code == 202, answer.text
    lead_id = answer.json()["event_id"]
    received = await records_until(stack.bootstrap, topics.LEADS_INTAKE, lambda r: lead_id.encode() in (r.value or b""))
    original = next(r for r in received if lead_id.encode() in (r.value or b""))

    # The router fails on the contact's second inquiry (a bug): it is dead-lettered as DeadLetters.publish writes it.
    second = json.loads(original.value or b"{}")
    second["event_id"] = str(uuid.uuid4())
    second["payload"]["message"] = f"second inquiry {tag}"
    value = json.dumps(second).encode()
    headers = [("dlq-original-headers", b"0"), ("dlq-reason", b"failed: RuntimeError"),
               ("dlq-error-type", b"RuntimeError"), ("dlq-source-topic", topics.LEADS_INTAKE.encode()),
               ("dlq-source-partition", str(original.partition).encode()),
               ("dlq-source-offset", str(original.offset + 1).encode()), ("dlq-service", b"router")]  # fmt: skip
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all")
    await producer.start()
    try:
        meta = await producer.send_and_wait(topics.dlq(topics.LEADS_INTAKE), value, key=original.key, headers=headers)
    finally:
        await producer.stop()
    await eventually(lambda: db["router_leads"].find_one({"_id": lead_id}), what="the first lead routed")

    # The contact asks to be forgotten; the erasure completes.
    async with httpx.AsyncClient(base_url=stack.url("crm-api"), timeout=10) as crm:
        asked = await crm.post(f"/v1/accounts/{ACCOUNT}/erasures", json={"email": email, "reason": "ticket 1"},
                               headers=stack.auth(BROKER, "broker", ACCOUNT))  # fmt: skip
    assert asked.status_code == 202, asked.text
    erasure_id = asked.json()["erasure_id"]
    await eventually(lambda: db["router_erasures"].find_one({"_id": erasure_id, "status": "done"}),
                     what="the erasure done")  # fmt: skip

    async def forgotten() -> bool:
        return await holders_of(db, traces) == []

    await eventually(forgotten, timeout=30, what="every store to forget the contact")

    async def dropped_so_far() -> float:
        async with httpx.AsyncClient(base_url=stack.url("router"), timeout=10) as router:
            return metric((await router.get("/metrics")).text, "router_erased_inquiries_total")

    before = await dropped_so_far()
    # Later, the router's bug fixed, the operator replays the topic's dead letters as the runbook says.
    where = f"{meta.partition}:{meta.offset}"
    dlq = topics.dlq(topics.LEADS_INTAKE)
    code, replayed = await ops_json(stack.bootstrap, stack.mongo_url, "dlq", "replay", dlq, "--offset", where)

    assert code == 0, replayed

    async def dropped() -> bool:
        return await dropped_so_far() > before

    await eventually(dropped, timeout=60, what="the router to take the replayed inquiry unrouted")
    holders = await holders_of(db, traces)
    assert holders == [], f"the erased contact is back after the replay ({replayed['outcomes']}): {holders}"
    erasure = await db["router_erasures"].find_one({"_id": erasure_id})
    assert erasure is not None
    assert "contact_ids" not in erasure, "done: the audit record keeps no hash of the person"
    assert await db["router_contacts"].count_documents({"erased_ms": {"$exists": True}}) >= 1, "the mark, a hash"
