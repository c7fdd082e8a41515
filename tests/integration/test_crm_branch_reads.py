"""A realtor's `$or` scope on nx-27017 (decision 0102, session 35; helper 166's review): its list poll
(`change_mark`) asks it one branch at a time (`or_branches`); its list pages (`find_page`), a bulk action's
`matching` and a search ask it whole. Each against the server's own query, for any row and any list query (every
filter, a search, every order, a cursor); a list walked while a lead moves between branches lists it; a scope with
its own `$and` is kept whole."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from crm_harness import views_database
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scope_cases import AGENTS, MISSING, SCOPE_FIELDS, SCOPES, stored

from leadflow_crm_api.adapters.leads import (
    CRM_LEADS,
    ScopedLeads,
    _opaque,
    merge_conditions,
    query_filter,
    realtor_filter,
    scope_filter,
)
from leadflow_crm_api.domain.principal import Principal, Role
from leadflow_crm_api.domain.views import LeadQuery, LeadSort, LeadStatus, LeadTab

pytestmark = [pytest.mark.integration]

key = st.sampled_from([MISSING, None, 1, 2, 3])
row = st.fixed_dictionaries({
    "account_id": st.sampled_from(["acme", "zeta"]),
    **SCOPE_FIELDS,
    "status": st.sampled_from([MISSING, "offered", "assigned"]),
    "source": st.sampled_from([MISSING, "Website", "Zillow"]),
    "pond": st.sampled_from([MISSING, None, "open-house"]),
    "search_labels": st.sampled_from([MISSING, [], ["hot"], ["cold", "hot"]]),
    "search_name": st.sampled_from([MISSING, "", "ana smith", "a.b c"]),
    "search_email": st.sampled_from([MISSING, "", "ana@x.io", "bob@y.io"]),
    "search_phone": st.sampled_from([MISSING, "", "5551234"]),
    "created_ms": key,
    "last_activity_ms": key,
})  # fmt: skip
maybe_agent = st.none() | st.sampled_from(AGENTS)
query = st.builds(
    LeadQuery,
    tab=st.sampled_from(list(LeadTab)),
    status=st.none() | st.sampled_from([LeadStatus.OFFERED, LeadStatus.ASSIGNED]),
    owner_agent_id=maybe_agent,
    assigned_to=maybe_agent,
    source=st.none() | st.just("Website"),
    label=st.none() | st.sampled_from(["hot", "Cold"]),
    created_from_ms=st.none() | st.integers(1, 3),
    created_to_ms=st.none() | st.integers(2, 4),
    search=st.none() | st.sampled_from(["ana", "a.b", "b c", "555", "@"]),
    sort=st.sampled_from(list(LeadSort)),
    pond=st.none() | st.just("open-house"),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(row, max_size=12), lead_query=query, limit=st.integers(1, 5), after_row=st.none() | st.integers(0, 12)
)
def test_a_list_page_of_any_query_is_the_page_the_scoped_query_gives(
    mongo_url: str, rows: list[dict[str, Any]], lead_query: LeadQuery, limit: int, after_row: int | None
) -> None:
    """`find_page` for every scope, any query (tab, status, holder, assignee, source, label, created range, pond, a
    search), any order, first page or after a cursor: the rows and order of the server's own scoped query."""

    async def compare() -> None:
        async with views_database(mongo_url) as db:
            await stored(db, rows)
            field, direction = lead_query.sort.field, -1 if lead_query.sort.descending else 1
            for name, scope in SCOPES.items():
                conditions = merge_conditions([scope, *query_filter(lead_query)])
                everything = (
                    await db[CRM_LEADS].find(conditions).sort([(field, direction), ("_id", direction)]).to_list()
                )
                after = None
                if after_row is not None and everything:
                    cursor_doc = everything[after_row % len(everything)]
                    if isinstance(cursor_doc.get(field), int):
                        after = (cursor_doc[field], cursor_doc["_id"])
                        everything = everything[everything.index(cursor_doc) + 1 :]
                        everything = [d for d in everything if isinstance(d.get(field), int)]
                page = await ScopedLeads(db, scope).find_page(lead_query, limit=limit, after=after)
                assert [r.lead_id for r in page] == [d["_id"] for d in everything[:limit]], f"{name}: {lead_query}"

    asyncio.run(compare())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(row, max_size=12), lead_query=query, limit=st.integers(1, 13))
def test_the_rows_a_bulk_action_s_filter_matches_are_the_scoped_query_s(
    mongo_url: str, rows: list[dict[str, Any]], lead_query: LeadQuery, limit: int
) -> None:
    """`matching` (a bulk action's filter, oldest first): the first `limit` rows of the server's own scoped query."""

    async def compare() -> None:
        async with views_database(mongo_url) as db:
            await stored(db, rows)
            for name, scope in SCOPES.items():
                conditions = merge_conditions([scope, *query_filter(lead_query)])
                cursor = db[CRM_LEADS].find(conditions).sort([("created_ms", 1), ("_id", 1)])
                expected = [d["_id"] for d in await cursor.to_list()][:limit]
                found = await ScopedLeads(db, scope).matching(lead_query, limit)
                assert [r.lead_id for r in found] == expected, f"{name}: {lead_query}"

    asyncio.run(compare())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(row, max_size=12))
def test_a_list_s_mark_of_any_rows_is_the_one_of_the_scoped_query_s_most_recent_row(
    mongo_url: str, rows: list[dict[str, Any]]
) -> None:
    """A list page's poll (`change_mark`) asks a realtor's `$or` one branch at a time (nx-27017 runs the whole `$or`
    in Python): its mark is that of the most recent row the scoped query itself finds, ties and rows without a time
    included (ordered as MongoDB orders them). With a flat equality on the indexed `offered_to` array this failed at
    once (nx-27017 matches no element there: `or_branches` asks `$in`)."""

    async def compare() -> None:
        async with views_database(mongo_url) as db:
            docs = await stored(db, rows)
            for name, scope in SCOPES.items():
                top = await db[CRM_LEADS].find(scope).sort([("last_activity_ms", -1), ("_id", -1)]).to_list(1)
                expected = (
                    "" if not top else _opaque(top[0]["_id"], top[0].get("last_activity_ms"), top[0]["last_event_id"])
                )
                assert await ScopedLeads(db, scope).change_mark() == expected, f"{name}: {docs}"

    asyncio.run(compare())


class _WriteBeforeQuery:
    """A cursor of the leads collection that runs `write` just before its query is sent (first iteration)."""

    def __init__(self, cursor: Any, write: Any) -> None:
        self._cursor, self._write = cursor, write

    def sort(self, *args: Any, **kwargs: Any) -> _WriteBeforeQuery:
        self._cursor = self._cursor.sort(*args, **kwargs)
        return self

    def limit(self, n: int) -> _WriteBeforeQuery:
        self._cursor = self._cursor.limit(n)
        return self

    async def to_list(self, *args: Any) -> list[dict[str, Any]]:
        await self._write()
        return await self._cursor.to_list(*args)  # type: ignore[no-any-return]

    async def __aiter__(self) -> Any:
        await self._write()
        async for doc in self._cursor:
            yield doc


class _LeadsWrittenMidRead:
    """The leads collection, with one write landing just before the `at`-th query crm-api sends through it."""

    def __init__(self, leads: Any, at: int, write: Any) -> None:
        self._leads, self._at, self._write, self.sent = leads, at, write, 0

    def find(self, *args: Any, **kwargs: Any) -> Any:
        self.sent += 1
        cursor = self._leads.find(*args, **kwargs)
        return _WriteBeforeQuery(cursor, self._write) if self.sent == self._at else cursor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._leads, name)


def test_a_lead_in_the_scope_all_along_is_listed_whatever_write_lands_while_the_list_is_read(mongo_url: str) -> None:
    """Ana pages through her leads (newest first, two a page) while the projection applies her claim of lead X,
    offered to her (`offered_to: [ana]`) and now held by her (`owner_agent_id: ana`, `offered_to: []`): one update of
    one row, in her scope before and after, its creation time unchanged. The server's scoped query reads the rows at
    one time, so X is on her first page whenever the update lands. Asked a branch at a time, a claim landing after
    the holder's branch was read and before the offered one is in neither: the first page holds the next two leads,
    its cursor passes X, and the walk never lists it (the same with her CRM's scope, whose branches are in the same
    order)."""

    async def walk_with_claim_at(db: Any, scope: dict[str, Any], at: int) -> list[str]:
        leads = db[CRM_LEADS]
        await leads.delete_many({})
        await leads.insert_many([
            {"_id": "x", "account_id": "acme", "offered_to": ["ana"], "created_ms": 5, "last_activity_ms": 5},
            {"_id": "y", "account_id": "acme", "owner_agent_id": "ana", "created_ms": 3, "last_activity_ms": 3},
            {"_id": "z", "account_id": "acme", "owner_agent_id": "ana", "created_ms": 1, "last_activity_ms": 1},
        ])  # fmt: skip

        async def claim() -> None:
            await leads.update_one(
                {"_id": "x"}, {"$set": {"owner_agent_id": "ana", "offered_to": [], "last_activity_ms": 6}}
            )

        scoped = ScopedLeads(db, scope)
        proxy = _LeadsWrittenMidRead(leads, at, claim)
        real_views = scoped._views

        async def views() -> Any:
            _, timeline = await real_views()
            return proxy, timeline

        scoped._views = views  # type: ignore[method-assign]
        listed: list[str] = []
        after: tuple[int, str] | None = None
        while True:
            page = await scoped.find_page(LeadQuery(), limit=2, after=after)
            listed += [r.lead_id for r in page]
            if len(page) < 2:
                return listed
            after = (page[-1].created_ms, page[-1].lead_id)

    async def check() -> None:
        async with views_database(mongo_url) as db:
            ana = Principal("ana", Role.REALTOR, "acme")
            for name, scope in {"ana in acme": scope_filter(ana, "acme"), "ana's CRM": realtor_filter(ana)}.items():
                for at in range(1, 9):
                    listed = await walk_with_claim_at(db, scope, at)
                    assert sorted(listed) == ["x", "y", "z"], f"{name}, the claim before query {at}: {listed}"

    asyncio.run(check())


def test_a_scope_holding_an_and_beside_its_or_is_kept_whole_by_the_mark(
    mongo_url: str,
) -> None:
    """A careless caller's scope (none crm-api builds today): `{"$and": [account acme], "owner_agent_id": "ana",
    "$or": [{"owner_agent_id": "ana"}, {"transferred_to": "ana"}]}`. `change_mark` splits it with `or_branches`
    (it had no `$and` guard): the owner branch collides with the flat `owner_agent_id`, goes to
    `$and`, and `merge_conditions` writes its `$and` over the scope's own, dropping `account_id: acme`. The mark is
    then the newest row of another account's (zeta) that the scope does not hold. Now such a scope is asked whole,
    and `merge_conditions` keeps a condition's own `$and` beside the ones it adds."""

    async def check() -> None:
        async with views_database(mongo_url) as db:
            held = {"owner_agent_id": "ana"}
            await db[CRM_LEADS].insert_many([
                {"_id": "mine", "account_id": "acme", **held, "last_activity_ms": 1, "last_event_id": "e1"},
                {"_id": "theirs", "account_id": "zeta", **held, "last_activity_ms": 2, "last_event_id": "e2"},
            ])  # fmt: skip
            scope = {
                "$and": [{"account_id": "acme"}],
                "owner_agent_id": "ana",
                "$or": [{"owner_agent_id": "ana"}, {"transferred_to": "ana"}],
            }
            assert [d["_id"] async for d in db[CRM_LEADS].find(scope)] == ["mine"]
            assert await ScopedLeads(db, scope).change_mark() == _opaque("mine", 1, "e1")

    asyncio.run(check())
