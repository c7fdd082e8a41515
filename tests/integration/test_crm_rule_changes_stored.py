"""crm-api's routing rules and availability use cases (issue 15) on a real MongoDB-wire server: versions and
the compare-and-set behind them, 409 on a stale version, 422 with the field and the reason (roster, all caps
at zero), the audit, an agent's availability history, and who may change or read what."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from fastapi.exceptions import RequestValidationError
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_crm_api.adapters.leads import ensure_indexes
from leadflow_crm_api.domain.principal import Principal, Role
from leadflow_crm_api.domain.rules_and_availability import (
    ALL_CAPPED,
    Availability,
    RoutingRules,
    SettingsChange,
    stored_rules,
)
from leadflow_crm_api.errors import Forbidden, NotFound, VersionConflict
from leadflow_crm_api.use_cases import rules_and_availability as uc
from leadflow_shared.availability import availability_of
from leadflow_shared.collections import ACCOUNTS, AGENTS, CRM_SETTINGS_AUDIT
from leadflow_shared.routing_rules import RuleSet, rule_set_of

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

Db = AsyncDatabase[dict[str, Any]]
ACCOUNT, OTHER = "north", "south"
BROKER = Principal("nora", Role.BROKER, ACCOUNT)
ADMIN = Principal("adam", Role.ADMIN, ACCOUNT)
ANA = Principal("ana", Role.REALTOR, ACCOUNT)
SELLERS = {
    "rules": [{"id": "sellers", "name": "Sellers", "criteria": {"intents": ["sell"]},
               "action": {"kind": "agent", "agent_id": "ana"}}],
}  # fmt: skip


@pytest_asyncio.fixture(loop_scope="session")
async def db(mongo_url: str) -> AsyncIterator[Db]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    database = client[f"crm_rules_{uuid.uuid4().hex[:12]}"]
    await ensure_indexes(database)
    await database[ACCOUNTS].insert_many(
        [{"_id": ACCOUNT, "roster": ["nora", "ana", "ben"]}, {"_id": OTHER, "roster": ["sid"]}]
    )
    await database[AGENTS].insert_many(
        [{"_id": a, "account_id": ACCOUNT, "name": a} for a in ("nora", "ana", "ben")]
        + [{"_id": "cy", "account_id": ACCOUNT, "name": "cy", "round_robin": False}]  # takes no round-robin leads
        + [{"_id": "sid", "account_id": OTHER, "name": "sid"}]
    )
    yield database
    await client.drop_database(database.name)
    await client.close()


def rules(version: int, body: dict[str, Any] = SELLERS) -> RoutingRules:
    return RoutingRules.model_validate(body | {"version": version})


async def save_rules(db: Db, version: int, body: dict[str, Any] = SELLERS, by: Principal = BROKER) -> RoutingRules:
    return await uc.put_routing_rules(await uc.rules_scope(ACCOUNT, by, db), rules(version, body))


async def history(db: Db) -> list[tuple[str, int | None, int | None]]:
    changes = await uc.routing_rules_history(await uc.rules_scope(ACCOUNT, BROKER, db), limit=10)
    return [(c.by_user_id, c.version_before, c.version_after) for c in changes.items]


def refused_at(exc: pytest.ExceptionInfo[RequestValidationError]) -> dict[str, str]:
    return {".".join(str(p) for p in e["loc"]): e["msg"] for e in exc.value.errors()}


async def test_each_saved_change_raises_the_version_and_is_audited(db: Db) -> None:
    scope = await uc.rules_scope(ACCOUNT, BROKER, db)
    assert (await uc.get_routing_rules(scope)).model_dump() == RoutingRules().model_dump()  # the default, version 0
    assert (await save_rules(db, 0)).version == 1
    second = {"rules": [*SELLERS["rules"], {"id": "all", "name": "All", "action": {"kind": "rotation"}}]}
    assert (await save_rules(db, 1, second, by=ADMIN)).version == 2

    got = await uc.get_routing_rules(scope)
    assert (got.version, [r.id for r in got.rules]) == (2, ["sellers", "all"])
    account = await db[ACCOUNTS].find_one({"_id": ACCOUNT})
    assert account is not None
    assert (rule_set_of(account) or RuleSet()).model_dump() == got.model_dump(), "stored as the router reads it"
    assert await history(db) == [("adam", 1, 2), ("nora", 0, 1)]
    entry = await db[CRM_SETTINGS_AUDIT].find_one({"account_id": ACCOUNT, "version_after": 2})
    assert entry is not None
    assert (entry["setting"], entry["by_user_id"], entry["document"]["rules"][1]["id"]) == (
        "routing_rules",
        "adam",
        "all",
    )


async def test_a_change_based_on_an_older_version_is_a_conflict_and_writes_nothing(db: Db) -> None:
    scope = await uc.rules_scope(ACCOUNT, BROKER, db)
    unset = stored_rules(await db[ACCOUNTS].find_one({"_id": ACCOUNT}) or {}).guard
    await save_rules(db, 0)
    assert not await scope.settings.set_account_if(unset, {"routing_rules": {}}), "the compare-and-set's guard"
    with pytest.raises(VersionConflict, match="at version 1"):
        await save_rules(db, 0, {"rules": []})
    with pytest.raises(VersionConflict):
        await save_rules(db, 7, {"rules": []})  # nor one from the future
    stored = await uc.get_routing_rules(await uc.rules_scope(ACCOUNT, BROKER, db))
    assert (stored.version, [r.id for r in stored.rules]) == (1, ["sellers"])
    assert await history(db) == [("nora", 0, 1)]


async def test_of_two_changes_based_on_the_same_version_exactly_one_is_saved(db: Db) -> None:
    for _ in range(3):
        version = (await uc.get_routing_rules(await uc.rules_scope(ACCOUNT, BROKER, db))).version
        outcomes = await asyncio.gather(save_rules(db, version), save_rules(db, version), return_exceptions=True)
        assert sorted(type(o).__name__ for o in outcomes) == ["RoutingRules", "VersionConflict"], outcomes
    assert [after for _, _, after in await history(db)] == [3, 2, 1]


async def test_agents_off_the_roster_are_refused_naming_the_rule(db: Db) -> None:
    body = {"rules": [{"id": "x", "name": "X", "action": {"kind": "rotation", "agents": ["ana", "sid"]}}],
            "default": {"action": {"kind": "agent", "agent_id": "cy"}}}  # fmt: skip
    with pytest.raises(RequestValidationError) as refused:
        await save_rules(db, 0, body)
    assert refused_at(refused) == {
        "body.rules.0": "rule 'x': agents not on the roster: ['sid']",
        "body.default": "rule 'default': agents not on the roster: ['cy']",
    }
    assert await history(db) == []
    assert "routing_rules" not in (await db[ACCOUNTS].find_one({"_id": ACCOUNT}) or {})


async def test_only_the_accounts_brokers_and_admins_change_its_rules(db: Db) -> None:
    with pytest.raises(Forbidden, match="brokers and admins"):
        await uc.rules_scope(ACCOUNT, ANA, db)
    with pytest.raises(Forbidden, match="this account"):
        await uc.rules_scope(ACCOUNT, Principal("sam", Role.BROKER, OTHER), db)
    with pytest.raises(NotFound):
        await uc.get_routing_rules(await uc.rules_scope("ghost", Principal("g", Role.BROKER, "ghost"), db))


async def availability(db: Db, agent_id: str, body: dict[str, Any], by: Principal = BROKER) -> Availability:
    scope = await uc.availability_scope(by.account_id, agent_id, by, db)
    return await uc.put_availability(scope, Availability.model_validate(body))


async def test_availability_is_stored_as_the_router_reads_it_and_audited(db: Db) -> None:
    body = {"paused": True, "away": [{"start": "2026-08-01T09:00:00-04:00", "end": "2026-08-08T09:00:00-04:00"}],
            "working_hours": [{"weekdays": [0, 1, 2], "start": "09:00", "end": "17:00"}],
            "holidays": ["2026-12-24"], "caps": {"day": 4, "week": 12}}  # fmt: skip
    own = await uc.put_my_availability(await uc.my_availability_scope(ANA, db), Availability.model_validate(body))
    stored = await db[AGENTS].find_one({"_id": "ana"})
    assert stored is not None
    assert (availability_of(stored) or Availability()).model_dump() == own.model_dump()
    assert (await uc.get_my_availability(await uc.my_availability_scope(ANA, db))).model_dump() == own.model_dump()

    # A broker resumes her; every field is set, so what the broker leaves out is cleared.
    await availability(db, "ana", {"paused": False})
    stored = await db[AGENTS].find_one({"_id": "ana"})
    assert stored is not None
    assert not stored["paused"]
    assert (stored["away"], stored["working_hours"], stored["holidays"], stored["caps"]) == ([], [], [], None)
    audit = [d async for d in db[CRM_SETTINGS_AUDIT].find({"setting": "availability"}).sort("at_ms", 1)]
    assert [(d["agent_id"], d["by_user_id"], bool(d["document"]["paused"])) for d in audit] == [
        ("ana", "ana", True),
        ("ana", "nora", False),
    ]


async def test_a_cap_of_zero_on_every_agent_taking_leads_is_refused_with_the_reason(db: Db) -> None:
    await availability(db, "nora", {"caps": {"day": 0}})
    await availability(db, "ana", {"caps": {"month": 0}}, by=ANA)
    with pytest.raises(RequestValidationError) as refused:
        await availability(db, "ben", {"caps": {"day": 3, "week": 0}})
    assert refused_at(refused) == {"body.caps.week": ALL_CAPPED}
    assert (await db[AGENTS].find_one({"_id": "ben"}) or {}).get("caps") is None, "nothing written"
    await availability(db, "cy", {"caps": {"day": 0}})  # cy takes no round-robin leads: no matter
    await availability(db, "ben", {"caps": {"day": 1}})


async def test_overlapping_working_hours_are_refused_at_the_weekday_and_nothing_is_written(db: Db) -> None:
    split = [
        {"weekdays": [0, 1], "start": "09:00", "end": "12:00"},
        {"weekdays": [0], "start": "13:00", "end": "17:00"},
    ]
    await availability(db, "ben", {"working_hours": split})
    overlapping = [*split, {"weekdays": [2, 1], "start": "11:30", "end": "13:30"}]
    with pytest.raises(RequestValidationError) as refused:
        await availability(db, "ben", {"working_hours": overlapping, "caps": {"day": 2}})
    assert refused_at(refused) == {
        "body.working_hours.2.weekdays.1": "Tuesday 11:30–13:30 overlaps Tuesday 09:00–12:00"
    }
    stored = await db[AGENTS].find_one({"_id": "ben"})
    assert stored is not None
    assert ([w["start"] for w in stored["working_hours"]], stored["caps"]) == (["09:00:00", "13:00:00"], None)
    assert len(await availability_history(db, "ben")) == 1, "only the first save is audited"

    # Hours stored before the check (here written by hand) stay savable unchanged with the other fields.
    await db[AGENTS].update_one({"_id": "ben"}, {"$set": {"working_hours": overlapping}})
    kept = await availability(db, "ben", {"working_hours": overlapping, "caps": {"day": 2}})
    assert (len(kept.working_hours), kept.caps) == (3, Availability.model_validate({"caps": {"day": 2}}).caps)


async def test_an_agent_changes_only_its_own_availability_and_brokers_only_their_accounts(db: Db) -> None:
    with pytest.raises(Forbidden, match="only their own"):
        await uc.availability_scope(ACCOUNT, "ben", ANA, db)
    with pytest.raises(Forbidden):
        await uc.availability_scope(ACCOUNT, "ana", Principal("sam", Role.BROKER, OTHER), db)
    with pytest.raises(NotFound):  # another account's agent, named under this one
        await uc.get_availability(await uc.availability_scope(ACCOUNT, "sid", BROKER, db))
    with pytest.raises(NotFound):  # a broker who is no agent has no availability of its own
        await uc.get_my_availability(await uc.my_availability_scope(Principal("boss", Role.BROKER, ACCOUNT), db))
    own = await uc.availability_scope(ACCOUNT, "ana", ANA, db)  # the account's path, for itself
    assert (await uc.get_availability(own)).paused is False
    assert await db[CRM_SETTINGS_AUDIT].count_documents({}) == 0


async def availability_history(db: Db, agent_id: str, by: Principal = BROKER, limit: int = 10) -> list[SettingsChange]:
    scope = await uc.availability_scope(ACCOUNT, agent_id, by, db)
    return (await uc.availability_history(scope, limit)).items


async def test_an_agents_availability_history_is_its_own_changes_newest_first(db: Db) -> None:
    # Three saves of ana's in quick succession (within a millisecond of each other, maybe), one of ben's.
    await uc.put_my_availability(await uc.my_availability_scope(ANA, db), Availability(paused=True))
    await availability(db, "ana", {"caps": {"day": 3}})
    await availability(db, "ben", {"holidays": ["2026-12-24"]})
    await availability(db, "ana", {"working_hours": [{"weekdays": [0], "start": "09:00", "end": "17:00"}]}, by=ADMIN)

    changes = await availability_history(db, "ana")
    assert [(c.setting, c.agent_id, c.by_user_id) for c in changes] == [
        ("availability", "ana", "adam"),
        ("availability", "ana", "nora"),
        ("availability", "ana", "ana"),
    ]
    assert changes[0].document["working_hours"] == [{"weekdays": [0], "start": "09:00:00", "end": "17:00:00"}]
    assert changes[1].document["caps"] == {"day": 3, "week": None, "month": None}
    assert changes[2].document["paused"] is True
    assert changes[0].at >= changes[1].at >= changes[2].at
    assert [c.by_user_id for c in await availability_history(db, "ana", limit=2)] == ["adam", "nora"]

    # The agent reads its own, by either path, as its brokers do; ben's is ben's alone; the rules' has none of it.
    mine = await uc.my_availability_history(await uc.my_availability_scope(ANA, db), limit=10)
    assert mine.items == changes == await availability_history(db, "ana", by=ANA)
    assert [c.document["holidays"] for c in await availability_history(db, "ben", by=ADMIN)] == [["2026-12-24"]]
    assert await history(db) == []
    assert await availability_history(db, "cy") == []


async def test_an_availability_history_is_for_the_agent_and_its_accounts_brokers_and_admins(db: Db) -> None:
    await availability(db, "ben", {"paused": True})
    with pytest.raises(Forbidden, match="only their own"):
        await availability_history(db, "ben", by=ANA)
    with pytest.raises(Forbidden, match="this account"):
        await availability_history(db, "ben", by=Principal("sam", Role.BROKER, OTHER))
    with pytest.raises(NotFound):  # another account's agent, named under this one
        await availability_history(db, "sid")
    with pytest.raises(NotFound):  # no such agent: no history, even an empty one
        await availability_history(db, "ghost")
    with pytest.raises(NotFound):  # a broker who is no agent has no availability of its own
        await uc.my_availability_history(await uc.my_availability_scope(Principal("boss", Role.BROKER, ACCOUNT), db))
