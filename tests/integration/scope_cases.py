"""The scopes crm-api builds and random rows to read them over, for the tests that compare a scoped read with the
server's own scoped query (test_crm_scoped_reads.py, test_crm_branch_reads.py). Imported by the test modules beside
it (pytest puts this folder on sys.path; it holds no tests)."""

from __future__ import annotations

import uuid
from typing import Any

from hypothesis import strategies as st
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_crm_api.adapters.leads import CRM_LEADS, offered_to, realtor_filter, scope_filter
from leadflow_crm_api.domain.principal import Principal, Role

MISSING = object()  # a field the row does not have
AGENTS = ["ana", "ben"]
one_agent = st.sampled_from([MISSING, None, *AGENTS])
agent_list = st.sampled_from([MISSING, None]) | st.lists(st.sampled_from([*AGENTS, None]), max_size=3)
SCOPE_FIELDS = {
    "owner_agent_id": one_agent,
    "offered_to": agent_list,
    "transferred_to": one_agent,
    "assigned_users": agent_list,
}
SCOPES: dict[str, dict[str, Any]] = {
    "broker of acme": scope_filter(Principal("bea", Role.BROKER, "acme"), "acme"),
    "ana in acme": scope_filter(Principal("ana", Role.REALTOR, "acme"), "acme"),
    "ana of acme, in zeta": scope_filter(Principal("ana", Role.REALTOR, "acme"), "zeta"),
    "ana's CRM": realtor_filter(Principal("ana", Role.REALTOR, "acme")),
    "ana's ponds in acme": {"account_id": "acme"} | offered_to("ana"),
}


async def stored(db: AsyncDatabase[dict[str, Any]], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`rows` as lead rows (an id and a last event's id each, without their MISSING fields), inserted."""
    docs = [
        {"_id": uuid.uuid4().hex, "last_event_id": uuid.uuid4().hex, **{k: v for k, v in r.items() if v is not MISSING}}
        for r in rows
    ]
    if docs:
        await db[CRM_LEADS].insert_many([dict(doc) for doc in docs])
    return docs
