"""Office-to-office transfers (T2), the lead profile they carry, labels, and the organisation's offices:
the use cases the JSON routes (routes/offices.py) and the web pages call. Their parameters use the
routes' dependency types only as annotations: callers pass plain values.

A broker/admin moves a lead or a team member to another office of its organisation. The
request is checked whole (a refusal changes nothing), recorded, then handed to the router
on leads.commands.v1; the answer is 202 with the transfer, `pending` until the router's
event reaches the views (`done`). Decision 0020.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from leadflow_crm_api.adapters.offices import Labels, OfficeTransfers, Organisation
from leadflow_crm_api.adapters.settings import AccountSettings
from leadflow_crm_api.deps import AccountLeads, Caller, Commands, Db, Id, IdempotencyKey, IdText, Members
from leadflow_crm_api.domain.distribution import MAX_LEADS, LeadFilter, LeadId, Skipped, recorded_filter
from leadflow_crm_api.domain.lead_row import LeadRow
from leadflow_crm_api.domain.offices import (
    BULK_KIND,
    TransferKind,
    TransferStatus,
    member_refusal,
    office_refusal,
    office_transfer_id,
    profile_fields,
    same_bulk,
)
from leadflow_crm_api.domain.principal import Principal
from leadflow_crm_api.domain.text import visible
from leadflow_crm_api.errors import Forbidden, InvalidRequest, NotFound, Unavailable
from leadflow_crm_api.publishing import publish_or_unavailable
from leadflow_crm_api.selection import refuse_named, selected_leads
from leadflow_shared.events.commands import (
    TransferLead,
    TransferLeadPayload,
    TransferTeamMember,
    TransferTeamMemberPayload,
)
from leadflow_shared.kafka import PublishRaw

# Shown to everyone who sees the lead: visible text only (domain/text.py), on one line.
Line = Annotated[
    str, StringConstraints(min_length=1, max_length=300, strip_whitespace=True), AfterValidator(visible(300))
]
Name = Annotated[
    str, StringConstraints(min_length=1, max_length=60, strip_whitespace=True), AfterValidator(visible(60))
]


# --- the lead profile (what T2 carries and drops) ------------------------------------------------

FOREIGN_LABELS = "Only users of the lead's account change its labels: keep the labels it has."


class LeadProfile(BaseModel):
    """A lead's CRM attributes. An office transfer keeps the first group and the labels; it drops campaigns."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "company": "Harbor Lofts LLC",
                    "office_address": "1 Main St, Brooklyn, NY 11201",
                    "home_address": "22 Oak Ave, Brooklyn, NY 11215",
                    "rating": 4,
                    "production_value": "$5M+",
                    "labels": ["Hot", "Relocating"],
                    "campaigns": ["Spring buyers"],
                    "campaign_subscriptions": ["Market report"],
                    "campaign_triggers": ["Price drop alert"],
                }
            ]
        },
    )

    company: Line | None = None
    office_address: Line | None = None
    home_address: Line | None = None
    rating: int | None = Field(default=None, ge=0, le=5, description="0 to 5 stars.")
    production_value: Line | None = Field(default=None, description="The production value label.")
    labels: list[Name] = Field(default_factory=list, max_length=50, description="Created in the account if missing.")
    campaigns: list[Name] = Field(default_factory=list, max_length=50, description="Not carried by office transfers.")
    campaign_subscriptions: list[Name] = Field(default_factory=list, max_length=50, description="Not carried.")
    campaign_triggers: list[Name] = Field(default_factory=list, max_length=50, description="Not carried.")


async def put_profile(leads: AccountLeads, caller: Caller, db: Db, lead_id: Id, body: LeadProfile) -> LeadProfile:
    """Replace the lead's profile (anyone who can see the lead); its labels are created in the account. A
    realtor holding another brokerage's lead (T1) keeps the labels as they are: they are that brokerage's
    filing, and a new one would be created in its account (403, S4)."""
    doc = await leads.get(lead_id)
    if doc is None:
        raise NotFound("No such lead.")
    profile = body.model_copy(update={"labels": list(dict.fromkeys(body.labels))})
    if doc.account_id != caller.account_id and set(profile.labels) != set(doc.labels):
        raise Forbidden(FOREIGN_LABELS)
    await Labels(db).ensure_named(doc.account_id, profile.labels, at=datetime.now(UTC))
    await leads.set_profile(lead_id, profile_fields(profile.model_dump()))
    return profile


class LabelPublic(BaseModel):
    name: str
    created_at_ms: int


class LabelList(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {"name": "Hot", "created_at_ms": 1795183200000},
                        {"name": "Relocating", "created_at_ms": 1795532645000},
                    ]
                }
            ]
        }
    )

    items: list[LabelPublic] = Field(description="The account's labels; filter leads with `label=`.")


async def list_labels(account_id: Id, caller: Caller, db: Db) -> LabelList:
    """Every label of the account, including those an office transfer created (brokers and admins)."""
    if account_id != caller.account_id:
        raise Forbidden("The token does not grant access to this account.")
    if not caller.sees_whole_account:
        raise Forbidden("The account's labels are for brokers and admins; realtors filter their leads by label.")
    docs = await Labels(db).of_account(account_id)
    return LabelList(items=[LabelPublic(name=d["name"], created_at_ms=d["created_ms"]) for d in docs])


# --- the organisation's offices ------------------------------------------------------------------


class Office(BaseModel):
    account_id: str
    name: str
    current: bool = Field(description="The caller's own office.")


class OfficeList(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "organisation_id": "acme-group",
                    "items": [
                        {"account_id": "acme-realty", "name": "Acme Realty", "current": True},
                        {"account_id": "acme-brooklyn", "name": "Acme Realty Brooklyn", "current": False},
                    ],
                }
            ]
        }
    )

    organisation_id: str | None = Field(description="Null: the account belongs to no organisation.")
    items: list[Office]


def _broker_of(caller: Principal, account_id: str) -> None:
    if account_id != caller.account_id:
        raise Forbidden("The token does not grant access to this account.")
    if not caller.sees_whole_account:
        raise Forbidden("Only brokers and admins of the account move leads and team members between offices.")


async def list_offices(account_id: Id, caller: Caller, db: Db) -> OfficeList:
    """The offices of the account's organisation: the targets of an office transfer."""
    _broker_of(caller, account_id)
    organisation = Organisation(db)
    account = await organisation.account(account_id)
    if account is None:
        raise NotFound("No such account.")
    org = account.get("organisation_id")
    if not org or (caller.organisation_id is not None and caller.organisation_id != org):
        return OfficeList(organisation_id=org or None, items=[])
    return OfficeList(
        organisation_id=org,
        items=[
            Office(account_id=d["_id"], name=d.get("name", d["_id"]), current=d["_id"] == account_id)
            for d in await organisation.offices(org)
        ],
    )


# --- office transfers ---------------------------------------------------------------------------


class OfficeTransferCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"lead_id": "0b8e6c1e-3f55-5d7a-9c1e-2f4a6b8c0d12", "to_account_id": "acme-brooklyn"},
                {"agent_id": "blair-chen", "to_account_id": "acme-brooklyn"},
            ]
        },
    )

    lead_id: uuid.UUID | None = Field(default=None, description="The lead to move; or give `agent_id`.")
    agent_id: IdText | None = Field(default=None, description="The team member to move; or give `lead_id`.")
    to_account_id: IdText = Field(description="Another office of the account's organisation.")

    @model_validator(mode="after")
    def _one_subject(self) -> OfficeTransferCreate:
        if (self.lead_id is None) == (self.agent_id is None):
            raise ValueError("give exactly one of lead_id and agent_id")
        return self


class OfficeTransferPublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "transfer_id": "a4104106-e3e6-50f9-886c-d2140da9179e",
                    "kind": "lead",
                    "lead_id": "0b8e6c1e-3f55-5d7a-9c1e-2f4a6b8c0d12",
                    "agent_id": None,
                    "from_account_id": "acme-realty",
                    "to_account_id": "acme-brooklyn",
                    "to_account_name": "Acme Realty Brooklyn",
                    "status": "pending",
                    "requested_at": "2026-11-24T15:04:05Z",
                    "requested_by": "alex-rivera",
                },
                {
                    "transfer_id": "e2b7c9d4-6a1f-4e8b-b3c5-7d9e1f2a4b6c",
                    "kind": "team_member",
                    "lead_id": None,
                    "agent_id": "blair-chen",
                    "from_account_id": "acme-realty",
                    "to_account_id": "acme-brooklyn",
                    "to_account_name": "Acme Realty Brooklyn",
                    "status": "done",
                    "requested_at": "2026-11-24T15:04:05Z",
                    "requested_by": "alex-rivera",
                },
            ]
        }
    )

    transfer_id: str
    kind: TransferKind
    lead_id: str | None = Field(default=None, description="The lead moved; null for a team member.")
    agent_id: str | None = Field(default=None, description="The team member moved; null for a lead.")
    from_account_id: str
    to_account_id: str
    to_account_name: str
    status: TransferStatus = Field(description="`pending` until the target office has the lead or team member.")
    requested_at: datetime
    requested_by: str


def _public(doc: dict[str, Any]) -> OfficeTransferPublic:
    return OfficeTransferPublic(
        transfer_id=doc["_id"],
        kind=TransferKind(doc["kind"]),
        lead_id=doc.get("lead_id"),
        agent_id=doc.get("agent_id"),
        from_account_id=doc["account_id"],
        to_account_id=doc["to_account_id"],
        to_account_name=doc["to_account_name"],
        status=TransferStatus(doc["status"]),
        requested_at=doc["at"],
        requested_by=doc["by"],
    )


async def transfer_to_office(
    account_id: Id,
    body: OfficeTransferCreate,
    leads: AccountLeads,
    caller: Caller,
    db: Db,
    publish: Commands,
    members: Members,
    idempotency_key: IdempotencyKey = None,
) -> OfficeTransferPublic:
    """T2: move a lead (a new lead there) or a team member (Onboarding there) to another office. A moved
    member's token of the office it left is refused from its next request on (S1, decision 0079)."""
    _broker_of(caller, account_id)
    transfers = OfficeTransfers(db)
    transfer_id = str(office_transfer_id(account_id, idempotency_key))
    stored = await transfers.get(account_id, transfer_id)
    checked_now = False
    if stored is None:
        if await transfers.bulk(account_id, transfer_id) is not None:  # the key of a bulk move: before any check
            raise InvalidRequest(_KEY_REUSED)
        record = await _checked_record(transfer_id, account_id, body, leads, caller, db)
        stored = await transfers.begin(record)
        checked_now = stored is record
    if (stored.get("lead_id"), stored.get("agent_id"), stored["to_account_id"]) != (
        None if body.lead_id is None else str(body.lead_id),
        body.agent_id,
        body.to_account_id,
    ):
        raise InvalidRequest(_KEY_REUSED)
    # Done: the router applied it (its command went, the mark did not); nothing to send. Else a retry's command is
    # checked against the present before it is sent (helper 153).
    if not stored.get("published") and stored["status"] != TransferStatus.DONE:
        if not checked_now and not await _still_movable(stored, leads, caller, db):
            return _public(stored)  # refused now, but its command may have gone out: answered as it is, not resent
        if stored["kind"] == TransferKind.TEAM_MEMBER:
            await transfers.move_member(stored)  # settings first: the router's event tells the target's staff
            await members.recheck(stored["agent_id"])
        if not await _send(transfers, publish, stored, retryable=idempotency_key is not None):
            raise InvalidRequest(f"lead_id: {_MOVING}; nothing was transferred.")
    if not stored.get("published"):
        await transfers.mark_published(stored["_id"])
    current = await transfers.get(account_id, transfer_id)
    return _public(current or stored)


_KEY_REUSED = "Idempotency-Key: already used for a different transfer; nothing was transferred."


async def _office_base(
    account_id: str, to_account_id: str, caller: Principal, db: Db, *, lead: bool = True
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the source office, a transfer record without id or subject), once the offices may move things."""
    organisation = Organisation(db)
    source = await organisation.account(account_id)
    if source is None:
        raise NotFound("No such account.")
    target = await organisation.account(to_account_id)
    if (
        refusal := office_refusal(source=source, target=target, token_organisation=caller.organisation_id, lead=lead)
    ) or (target is None):
        raise InvalidRequest(f"{refusal}; nothing was transferred.")
    at = datetime.now(UTC)
    return source, {
        "account_id": account_id,
        "to_account_id": target["_id"],
        "to_account_name": target.get("name", target["_id"]),
        "by": caller.sub,
        "at": at.replace(microsecond=at.microsecond // 1000 * 1000),  # what MongoDB keeps
        "status": TransferStatus.PENDING.value,
        "published": False,
    }


async def _still_movable(stored: dict[str, Any], leads: AccountLeads, caller: Principal, db: Db) -> bool:
    """A retry's single move, before its command (and a team member's settings) go: checked against the present,
    not only when its first attempt was (helper 153's review). The target must still be an office of the source's
    organisation (one that left it since is another tenant: the router checks no organisation), a lead still the
    office's and moved by no other transfer (the router refuses another office's lead, and this move would stay
    pending for good), and a team member still the source's or (its settings moved by the first attempt) the
    target's: one moved on since is refused before anything is written (helper 158's review #2). Refused: 422 naming
    the field, nothing sent, and the lead's move forgotten when its command certainly never went out (a retry is
    checked again as new), so it no longer holds the lead as "being moved". A refused move whose command may have
    gone out (being sent when the first attempt stopped: the router may apply it) is kept pending and answered as
    it is, nothing sent (False; helper 158's review #6)."""
    transfers = OfficeTransfers(db)
    try:
        lead = stored["kind"] == TransferKind.LEAD
        await _office_base(stored["account_id"], stored["to_account_id"], caller, db, lead=lead)
        if lead:
            lead_id = stored["lead_id"]
            other = (await transfers.moving(stored["account_id"], [lead_id])).get(lead_id, stored["_id"])
            if why := _bulk_refusal(await leads.get(lead_id), moving=other != stored["_id"]):
                raise InvalidRequest(f"lead_id: {why}; nothing was transferred.")
        else:
            await _still_a_member(stored, db)
    except (InvalidRequest, NotFound):
        if stored.get("sending"):
            return False
        await transfers.release(stored["account_id"], [stored["_id"]])
        raise
    return True


async def _still_a_member(stored: dict[str, Any], db: Db) -> None:
    """A team member's move retried: the member is still the source office's (and not its roster's only agent), or
    the target's (its first attempt moved the settings); else refused."""
    source, target, agent_id = stored["account_id"], stored["to_account_id"], stored["agent_id"]
    if await AccountSettings(db, target).agent(agent_id) is not None:
        return
    office = await Organisation(db).account(source)
    agent = await AccountSettings(db, source).agent(agent_id)
    if (refusal := member_refusal(agent, list((office or {}).get("roster", [])))) is not None:
        raise InvalidRequest(f"{refusal} (moved on since); nothing was transferred.")


async def _send(transfers: OfficeTransfers, publish: PublishRaw, transfer: dict[str, Any], *, retryable: bool) -> bool:
    """The transfer's command, marked as being sent first (it may go out from then on: its record is kept). Kafka
    refusing it (503) unmarks it; a lead's move that cannot be retried (no Idempotency-Key) is then forgotten, so
    it holds its lead as being moved no longer (helper 158's review #4). False, nothing sent and the move forgotten,
    when another move of the lead, checked at the same time, holds it (decision 0107)."""
    if transfer["kind"] == TransferKind.LEAD and not await transfers.hold_lead(transfer):
        await transfers.release(transfer["account_id"], [transfer["_id"]])
        return False
    await transfers.mark_sending(transfer["_id"])
    try:
        await _publish(publish, transfer)
    except Unavailable:
        await transfers.mark_unsent(transfer["_id"])
        if not retryable:
            await transfers.release(transfer["account_id"], [transfer["_id"]])
        raise
    return True


async def _checked_record(
    transfer_id: str,
    account_id: str,
    body: OfficeTransferCreate,
    leads: AccountLeads,
    caller: Principal,
    db: Db,
) -> dict[str, Any]:
    """Every check before anything is written; the record the writes take their values from."""
    source, record = await _office_base(account_id, body.to_account_id, caller, db, lead=body.lead_id is not None)
    record["_id"] = transfer_id
    if body.lead_id is not None:
        lead_id = str(body.lead_id)
        other = (await OfficeTransfers(db).moving(account_id, [lead_id])).get(lead_id, transfer_id)
        # Being moved by another transfer: refused, as a bulk move refuses it (helper 158's review #7).
        if why := _bulk_refusal(await leads.get(lead_id), moving=other != transfer_id):
            raise InvalidRequest(f"lead_id: {why}; nothing was transferred.")
        return record | {"kind": TransferKind.LEAD.value, "lead_id": str(body.lead_id), "agent_id": None}
    assert body.agent_id is not None  # noqa: S101 (the body's validator requires one of the two)
    agent = await AccountSettings(db, account_id).agent(body.agent_id)
    if (refusal := member_refusal(agent, list(source.get("roster", [])))) is not None or agent is None:
        raise InvalidRequest(f"{refusal}; nothing was transferred.")
    return record | {
        "kind": TransferKind.TEAM_MEMBER.value,
        "lead_id": None,
        "agent_id": body.agent_id,
        "agent_name": agent.get("name", body.agent_id),
    }


async def _publish(publish: PublishRaw, transfer: dict[str, Any]) -> None:
    """The transfer's command; its event id is the transfer id, so publishing it again is the same command."""
    command: TransferLead | TransferTeamMember
    common = {
        "account_id": transfer["account_id"],
        "event_id": uuid.UUID(transfer["_id"]),
        "occurred_at": transfer["at"].replace(tzinfo=UTC),
    }
    if transfer["kind"] == TransferKind.LEAD:
        command = TransferLead.create(
            **common,
            payload=TransferLeadPayload(
                lead_id=uuid.UUID(transfer["lead_id"]),
                to_account_id=transfer["to_account_id"],
                by_user_id=transfer["by"],
            ),
        )
    else:
        command = TransferTeamMember.create(
            **common,
            payload=TransferTeamMemberPayload(
                agent_id=transfer["agent_id"],
                agent_name=transfer["agent_name"],
                to_account_id=transfer["to_account_id"],
                by_user_id=transfer["by"],
            ),
        )
    await publish_or_unavailable(
        publish, command, detail="The transfer was not handed to the router; retry with the same Idempotency-Key."
    )


class BulkOfficeTransferCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"lead_ids": ["0b8e6c1e-3f55-5d7a-9c1e-2f4a6b8c0d12"], "to_account_id": "acme-brooklyn"},
                {"filter": {"source": "Zillow", "label": "Brooklyn"}, "to_account_id": "acme-brooklyn"},
            ]
        },
    )

    lead_ids: list[LeadId] | None = Field(default=None, min_length=1, max_length=MAX_LEADS)
    filter: LeadFilter | None = Field(default=None, description=f"Every lead it matches, at most {MAX_LEADS}.")
    to_account_id: IdText = Field(description="Another office of the account's organisation.")

    @model_validator(mode="after")
    def _one_selection(self) -> BulkOfficeTransferCreate:
        if (self.lead_ids is None) == (self.filter is None):
            raise ValueError("give either lead_ids or filter")
        return self


class BulkOfficeTransfer(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"bulk_id": "5d1f9c2e-7b3a-4e8d-a6c0-2f9e1b4d7a3c", "transfers": [], "skipped": []}]
        }
    )

    bulk_id: str
    transfers: list[OfficeTransferPublic] = Field(description="One per lead; poll each for `done`.")
    skipped: list[Skipped] = Field(default_factory=list, description="Leads the filter matched that cannot move.")


async def transfer_many_to_office(
    account_id: Id,
    body: BulkOfficeTransferCreate,
    leads: AccountLeads,
    caller: Caller,
    db: Db,
    publish: Commands,
    idempotency_key: IdempotencyKey = None,
) -> BulkOfficeTransfer:
    """T2 for many leads: the selected ones, or all a filter matches, each its own transfer.

    Named leads that cannot move (unknown, already being moved) refuse the request and nothing is
    sent; such leads a filter matches are skipped and listed. The bulk move is recorded (the leads it
    moves, those it skipped) before its transfers: a retry (the same `Idempotency-Key` and request) is
    known from that record before the request is checked again, so it resends what was not sent and
    answers the same transfers, also once the leads moved (a filter of the office matches them no more)."""
    _broker_of(caller, account_id)
    transfers = OfficeTransfers(db)
    bulk_id = str(office_transfer_id(account_id, idempotency_key))
    stored = None if idempotency_key is None else await transfers.bulk(account_id, bulk_id)
    checked_now = False
    if stored is None:
        record = await _checked_bulk(bulk_id, account_id, body, leads, caller, db)
        stored = await transfers.begin(record)
        checked_now = stored is record
    lead_filter = recorded_filter(body.filter, bulk_id, stored.get("filter"))
    if not same_bulk(stored, to_account_id=body.to_account_id, lead_ids=body.lead_ids, lead_filter=lead_filter):
        # The same refusal as a single move's reuse of a key (helper 122), also for the key of a single move.
        raise InvalidRequest("Idempotency-Key: already used for a different transfer; nothing was transferred.")
    if body.filter is not None and stored.get("filter") == (text := body.filter.as_stored()):
        # Stored with the filter's text before digests: rewritten as its digest now (helper 158's review #3).
        await transfers.set_filter(account_id, bulk_id, text, body.filter.digest(bulk_id))
    ids = {lead_id: _bulk_transfer_id(bulk_id, lead_id) for lead_id in stored["lead_ids"]}
    made = await transfers.of_ids(account_id, list(ids.values())) if ids else {}
    hold: set[str] = set()
    if not checked_now:
        stored, ids, hold = await _still_movable_in_bulk(stored, ids, made, leads, caller, db)
    done: list[OfficeTransferPublic] = []
    taken: list[str] = []  # by another move checked at the same time: skipped (decision 0107)
    for lead_id, transfer_id in ids.items():
        record = made.get(transfer_id) or await transfers.begin(
            {key: stored[key] for key in _BULK_BASE}
            | {"_id": transfer_id, "kind": TransferKind.LEAD.value, "lead_id": lead_id, "agent_id": None}
            | {"status": TransferStatus.PENDING.value, "published": False}
        )
        if not record.get("published") and record["_id"] not in hold:
            sent = record["status"] == TransferStatus.DONE  # done: the router applied it, nothing to send
            if not (sent or await _send(transfers, publish, record, retryable=idempotency_key is not None)):
                taken.append(lead_id)
                continue
            await transfers.mark_published(record["_id"])
        done.append(_public(record))
    if taken:
        stored = await _skip(transfers, stored, dict.fromkeys(taken, _MOVING))
    return BulkOfficeTransfer(
        bulk_id=bulk_id, transfers=done, skipped=[Skipped.model_validate(s) for s in stored["skipped"]]
    )


async def _skip(transfers: OfficeTransfers, stored: dict[str, Any], refusals: dict[str, str]) -> dict[str, Any]:
    """The bulk move's record without the refused leads, which it keeps as skipped with the reason (a next retry
    answers the same)."""
    kept = [i for i in stored["lead_ids"] if i not in refusals]
    skipped = [*stored["skipped"], *({"lead_id": i, "reason": why} for i, why in refusals.items())]
    await transfers.skip(stored["account_id"], stored["_id"], kept, skipped)
    return stored | {"lead_ids": kept, "skipped": skipped}


def _to_send(ids: dict[str, str], made: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The leads (with their transfer ids) whose move a bulk move's retry would still write or send: not made yet,
    or made and neither sent nor done."""
    return {
        lead_id: transfer_id
        for lead_id, transfer_id in ids.items()
        if (record := made.get(transfer_id)) is None
        or not (record.get("published") or record["status"] == TransferStatus.DONE)
    }


async def _still_movable_in_bulk(
    stored: dict[str, Any],
    ids: dict[str, str],
    made: dict[str, dict[str, Any]],
    leads: AccountLeads,
    caller: Principal,
    db: Db,
) -> tuple[dict[str, Any], dict[str, str], set[str]]:
    """A retry's bulk move once what it would still write or send is checked against the present (helper 153); what
    it sent already is answered as it was. The target must still be an office of the source's organisation, else the
    retry is refused (422 `to_account_id`, nothing sent, its unsent moves forgotten so they hold no lead as being
    moved). A lead no longer the office's, or being moved by another transfer, is skipped with the reason (the
    first attempt took it; another move took it since), its unsent move forgotten, and the record keeps it skipped,
    so the next retry answers the same. A refused lead whose move may have gone out (being sent when an attempt
    stopped) is neither skipped nor sent again: its transfer is answered as it is (helper 158's review #6). (the
    record, the leads it still moves with their transfer ids, the transfer ids not to send)"""
    to_send = _to_send(ids, made)
    if not to_send:
        return stored, ids, set()
    account_id, transfers = stored["account_id"], OfficeTransfers(db)
    unsent = [t for t in to_send.values() if t in made]
    try:
        await _office_base(account_id, stored["to_account_id"], caller, db)
    except (InvalidRequest, NotFound):
        await transfers.release(account_id, unsent)
        raise
    wanted = list(to_send)
    rows = await leads.get_many(wanted)
    pending = await transfers.moving(account_id, wanted)
    refusals = {
        i: why for i in wanted if (why := _bulk_refusal(rows.get(i), moving=pending.get(i, to_send[i]) != to_send[i]))
    }
    hold = {to_send[i] for i in refusals if made.get(to_send[i], {}).get("sending")}
    refusals = {i: why for i, why in refusals.items() if to_send[i] not in hold}
    if not refusals:
        return stored, ids, hold
    await transfers.release(account_id, [to_send[i] for i in refusals if to_send[i] in made])
    stored = await _skip(transfers, stored, refusals)
    return stored, {i: ids[i] for i in stored["lead_ids"]}, hold


# What a bulk move's record keeps of the request for its transfers: they take their values from it.
_BULK_BASE = ("account_id", "to_account_id", "to_account_name", "by", "at")


def _bulk_transfer_id(bulk_id: str, lead_id: str) -> str:
    return str(uuid.uuid5(uuid.UUID(bulk_id), lead_id))


async def _checked_bulk(
    bulk_id: str,
    account_id: str,
    body: BulkOfficeTransferCreate,
    leads: AccountLeads,
    caller: Principal,
    db: Db,
) -> dict[str, Any]:
    """Every check of a new bulk move before anything is written; its record: the leads it moves (those its
    filter picks now, but the skipped), and the skipped with the reason."""
    _, base = await _office_base(account_id, body.to_account_id, caller, db)
    transfers = OfficeTransfers(db)
    wanted, rows = await selected_leads(leads, body.lead_ids, body.filter)
    ours = {i: _bulk_transfer_id(bulk_id, i) for i in wanted}
    pending = await transfers.moving(account_id, wanted) if wanted else {}
    # A lead this very bulk is moving is no refusal: a first attempt with the same key, at the same time.
    refusals = {
        i: why for i in wanted if (why := _bulk_refusal(rows.get(i), moving=pending.get(i, ours[i]) != ours[i]))
    }
    made = await transfers.of_ids(account_id, list(ours.values())) if wanted else {}
    if any(doc["to_account_id"] != base["to_account_id"] for doc in made.values()):
        # The key made these leads' moves to another office (recorded before bulk moves had a record of their own).
        raise InvalidRequest("Idempotency-Key: already used for a different transfer; nothing was transferred.")
    for lead_id in wanted:  # moved already by this very bulk (that first attempt, or one recorded before): no refusal
        if ours[lead_id] in made:
            refusals.pop(lead_id, None)
    refuse_named(body.lead_ids, refusals)
    return {key: base[key] for key in _BULK_BASE} | {
        "_id": bulk_id,
        "kind": BULK_KIND,
        "lead_ids": [i for i in wanted if i not in refusals],
        "filter": None if body.filter is None else body.filter.digest(bulk_id),
        "skipped": [{"lead_id": i, "reason": why} for i, why in refusals.items()],
    }


def _bulk_refusal(row: LeadRow | None, *, moving: bool) -> str | None:
    if row is None:
        return "not a lead of this account"
    return _MOVING if moving else None


_MOVING = "already being moved to another office"


async def get_office_transfer(account_id: Id, transfer_id: Id, caller: Caller, db: Db) -> OfficeTransferPublic:
    """Whether the transfer is done: the lead is in the target's views, or the team member's staff were told."""
    _broker_of(caller, account_id)
    doc = await OfficeTransfers(db).get(account_id, transfer_id)
    if doc is None:
        raise NotFound("No such office transfer.")
    return _public(doc)
