"""Lead transfers of one brokerage (T1): `crm_transfers` records, and their writes to the CRM views.

A transfer is recorded first (`done: False`), then its lead rows are `$set` and one timeline
document per lead is inserted under a derived id, then it is marked done. Every write takes
its values from the record, so retrying a transfer that crashed half-way (same
Idempotency-Key) repeats identical writes and finishes it. Authorisation happens before.
"""

from __future__ import annotations

import contextlib
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from leadflow_crm_api.adapters.generations import Write, active_names, writing
from leadflow_crm_api.domain.sharing import lead_row_transfer, transfer_entry
from leadflow_shared.collections import ACCOUNTS, CRM_TRANSFERS

Doc = dict[str, Any]


class AccountTransfers:
    def __init__(self, db: AsyncDatabase[Doc], account_id: str) -> None:
        self._db = db
        self._account_id = account_id

    async def account_name(self) -> str | None:
        doc = await self._db[ACCOUNTS].find_one({"_id": self._account_id}, {"name": 1})
        name = doc.get("name") if doc else None
        return name if isinstance(name, str) and name else None

    async def present(self, lead_ids: list[str]) -> set[str]:
        """Which of `lead_ids` are leads of this account."""
        leads = self._db[(await active_names(self._db)).leads]
        cursor = leads.find({"account_id": self._account_id, "_id": {"$in": lead_ids}}, {"_id": 1})
        return {doc["_id"] async for doc in cursor}

    async def get(self, transfer_id: str) -> Doc | None:
        """The account's transfer record of this id (a retry's, looked up before its request is checked again)."""
        return await self._db[CRM_TRANSFERS].find_one({"_id": transfer_id, "account_id": self._account_id})

    async def begin(self, record: Doc) -> Doc:
        """Store the transfer record; if its id is stored already (a retry), return the stored one."""
        transfers = self._db[CRM_TRANSFERS]
        try:
            await transfers.insert_one(record)
        except DuplicateKeyError:
            stored = await self.get(record["_id"])
            if stored is None:  # ids hash the account, so only a foreign uuid4 clash lands here: never read it
                raise
            return stored
        return record

    async def apply(self, transfer: Doc) -> None:
        """The transfer's writes, each idempotent, then the record's `done` flag."""
        lead_ids: list[str] = transfer["lead_ids"]
        async with writing(self._db, Write(lead_ids=tuple(lead_ids))) as names:
            await self._db[names.leads].update_many(
                {"account_id": self._account_id, "_id": {"$in": lead_ids}}, {"$set": lead_row_transfer(transfer)}
            )
            timeline = self._db[names.timeline]
            # Entries of the rows it wrote: a lead moved to another office meanwhile is not this account's to say so
            # of (its timeline is read by lead id: helper 179's review).
            query = {"account_id": self._account_id, "_id": {"$in": lead_ids}, "transfer_id": transfer["_id"]}
            written = {doc["_id"] async for doc in self._db[names.leads].find(query, {"_id": 1})}
            for lead_id in (i for i in lead_ids if i in written):
                # One insert per lead, not insert_many: a retry meets its own earlier entries as duplicates.
                with contextlib.suppress(DuplicateKeyError):
                    await timeline.insert_one(transfer_entry(transfer, lead_id))
        await self._db[CRM_TRANSFERS].update_one({"_id": transfer["_id"]}, {"$set": {"done": True}})

    async def mark_published(self, transfer_id: str) -> None:
        await self._db[CRM_TRANSFERS].update_one({"_id": transfer_id}, {"$set": {"published": True}})

    async def drop(
        self, transfer_id: str, lead_ids: list[str], dropped: list[Doc], *, refusal: str | None = None
    ) -> None:
        """A retry left out leads that can no longer be shared: the record keeps the leads it still shares and those
        it dropped with the reason (whole arrays `$set`, decision 0004), so its writes, commands and the next retry's
        answer are of those it keeps; none kept, the `refusal` every later retry answers."""
        fields: Doc = {"lead_ids": lead_ids, "dropped": dropped}
        if refusal is not None:
            fields["refusal"] = refusal
        await self._db[CRM_TRANSFERS].update_one({"_id": transfer_id, "account_id": self._account_id}, {"$set": fields})

    async def written(self, transfer_id: str, lead_ids: list[str]) -> set[str]:
        """Which of `lead_ids` are the account's leads whose rows this transfer wrote already."""
        if not lead_ids:
            return set()
        leads = self._db[(await active_names(self._db)).leads]
        query = {"account_id": self._account_id, "_id": {"$in": lead_ids}, "transfer_id": transfer_id}
        return {doc["_id"] async for doc in leads.find(query, {"_id": 1})}

    async def set_filter(self, transfer_id: str, was: str, digest: str) -> None:
        """The record's filter, kept as text before digests (`was`), rewritten as its digest."""
        await self._db[CRM_TRANSFERS].update_one(
            {"_id": transfer_id, "account_id": self._account_id, "filter": was}, {"$set": {"filter": digest}}
        )
