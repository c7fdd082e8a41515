"""Router use cases: load state and snapshot, decide (pure), store, then publish.

Each routing record carries an outbox: the events of its last change, with ids derived
from the input (or the record's version), and the side effects to apply with them
(rotation cursor, contact keys). A change is stored first and flushed after, so a
crash in between is repaired by the next delivery or the sweeper, with the same ids.

Leads arrive in batches: one read of records; the batch's records already stored (a
redelivery after a crash) flushed first; one read of contacts and cursors, the decisions in
memory in order, one insert, one flush. So every lead stored before a message is decided has
its contact keys and rotation cursor applied by then (R1, decision 0022). Changes to an
existing lead (claims, expiries) are compare-and-set writes on its `version`, so a race has
one winner (I2).

Office transfers (T2, leads.commands.v1) are compare-and-set changes too. Their events
belong to the office the lead left (envelope and Kafka key), while the record moves to the
new office: such a record keeps one key per outbox entry in `outbox_keys` (absent when
every key is the record's account, as on every other path), and moves the contact keys
(R1) with the `contacts`/`forget_contacts` effects.

Lead sharing (T1, leads.commands.v1) is a compare-and-set too: the record stays in its
account and the realtor holds it, so it needs neither `outbox_keys` nor contact moves.

Erasing a contact (leads.commands.v1, decision 0050) resolves its leads once into an erasure
record, forgets their contact keys, scrubs each lead by compare-and-set, then publishes one
ContactErased for the other services.

Exceptions: RoutingRejected (unknown account or lead; an impossible transfer or share) is
returned per message from batches, or raised, and dead-lettered at the edge. A new lead
pre-assigned to an agent the account does not have is not rejected: it is routed as a
general lead (R4, decision 0011). Nor is an action by someone who holds no offer: it is
logged as activity and claims nothing (decision 0029).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from itertools import repeat
from typing import Any
from urllib.parse import quote

from pydantic import ValidationError

from leadflow_router.adapters.codec import from_ms, readable_decisions, to_ms
from leadflow_router.adapters.ports import (
    AccountSource,
    CapacityLog,
    ContactIndex,
    ErasureLog,
    RotationCursors,
    RoutingRecords,
)
from leadflow_router.domain.availability import (
    CountedLeads,
    Gate,
    Place,
    Usage,
    counted,
    in_line,
    past_cap,
    period_start,
    usage_of,
)
from leadflow_router.domain.contacts import contact_keys, erased_id, in_account, made_before_erasure
from leadflow_router.domain.decisions import (
    ExistingContact,
    NewLead,
    NextUp,
    Outcome,
    Pool,
    RoutingContext,
    Standing,
    current_rule_id,
    follows_source,
    idle_watch,
    next_up,
    on_activity,
    on_ask_back,
    on_deadline,
    pool_of,
    route_new_lead,
    rule_for,
    rule_id_of,
)
from leadflow_router.domain.departures import Departure, on_agent_left
from leadflow_router.domain.distribution import Distribution, on_distributed, on_returned
from leadflow_router.domain.erasure import ErasureRequest, PendingContacts, without_contact
from leadflow_router.domain.model import AccountSnapshot, Activity, Agent, LeadState, RoutingRejected
from leadflow_router.domain.record import Effects, Outbox, RoutingRecord, Take, Taken, received_digest
from leadflow_router.domain.rules import RuleChoice
from leadflow_router.domain.sharing import LeadShare, on_lead_shared
from leadflow_router.domain.transfers import OfficeTransfer, on_office_transfer, team_member_transferred
from leadflow_router.domain.why import Why, step_of
from leadflow_router.metrics import RouterMetrics
from leadflow_shared import tracing
from leadflow_shared.clock import from_epoch_ms
from leadflow_shared.consumers import BatchRejections
from leadflow_shared.dead_letters import POISON_ERRORS, is_transient
from leadflow_shared.envelope import Contract, derived_event_id
from leadflow_shared.events.activity import ActivityAction, LeadActivity
from leadflow_shared.events.commands import (
    AgentDeparture,
    DistributeLead,
    EraseContact,
    InviteRealtor,
    LeadCommand,
    ReleaseAgentLeads,
    ReturnLead,
    ShareLead,
    TransferLead,
    TransferTeamMember,
)
from leadflow_shared.events.intake import LeadReceived
from leadflow_shared.events.routing import (
    ContactErased,
    ContactErasedPayload,
    LeadPayload,
    LeadSummary,
    RealtorInvited,
    RealtorInvitedPayload,
)
from leadflow_shared.kafka import PublishRaw
from leadflow_shared.routing_info import RoutingDecision
from leadflow_shared.routing_rules import DEFAULT_RULE_ID, RotationAction, RotationMode, RuleSet

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
RECENT_INPUTS = 20  # activity ids remembered per lead to drop redeliveries
# Agents' actions read at once (decision 0109): a batch tried again re-applies what its record no longer remembers, so
# one lead's actions of a batch, with the commands landing meanwhile, stay within RECENT_INPUTS (helper 201's review).
ACTIVITY_BATCH = RECENT_INPUTS // 2
CONCURRENT_LEADS = ACTIVITY_BATCH  # leads of an activity batch applied at a time
CAS_ATTEMPTS = 10
# A batch of new leads decided again, at most, when another decider took the turns or cap slots it was decided on.
TURN_ATTEMPTS = 5
# A decider first in line for a slot past a cap reads it again, at most, while the others give their holds back.
KEEP_READS = 5
KEEP_WAIT_SECONDS = 0.01
# Reads of a rival's pending holds by a decider that backed off (`_let_rivals_settle`): 0.55 s at most, past the
# rival's own reads (`KEEP_READS`: 0.15 s) and its store.
SETTLE_READS = 10
# An outbox document older than this (wall clock) is finished by `republish_stale`: a crash left it and no
# redelivery came (decision 0068). Redeliveries finish theirs at once; this is the backstop.
STALE_BATCH_SECONDS = 60
# An outbox document listing a lead that has no record yet is kept this long (wall clock): its writer may still be
# storing the record. A writer whose records are stored later than STALE_BATCH_SECONDS after its documents moves
# their outboxes into the records instead (`_store`), so dropping it after this loses nothing while the replicas'
# clocks differ by less than the difference (decision 0068).
ORPHAN_BATCH_SECONDS = 3600
# A due deadline the sweeper cannot fire (its account unknown or unreadable, a fault) waits this long before it
# is looked at again, so it cannot hold up every other deadline behind it (decision 0077).
SWEEP_RETRY_SECONDS = 60
# A pass whose changes were deferred (another decider took a turn or slot they were decided on) goes round again at
# once; deferred again pass after pass (a rival that keeps the slot: a stalled replica, a crash's leftover), it waits
# a little longer each time, up to this long, instead of burning a core until it goes (issue 14 goal 2).
DEFERRED_PAUSE_MAX_MS = 2_000
NOT_ACTIVE = "not an active agent of this office"  # why such an agent's ask back (or pond claim) is refused


class LeadsBeingStoredError(RuntimeError):
    """An erasure found leads of the contact that an open outbox document lists and that have no record yet: their
    writer is storing them (decision 0068). Not poison: the consumer tries the erasure again, with backoff."""

    def __init__(self, leads: int) -> None:
        super().__init__(f"{leads} lead(s) of the contact are being stored; erasing again once they are")


class ContactErasedMeanwhileError(RuntimeError):
    """A batch's repeat (R1) was decided from contact keys an erasure forgot since: not poison; the batch is tried
    again, and the repeat is a new lead (`RouterService._not_into_erased`)."""

    def __init__(self, leads: int) -> None:
        super().__init__(f"{leads} lead(s) a repeat of this batch merges into were erased meanwhile; routing again")


class TurnsContendedError(RuntimeError):
    """Other deciders kept taking the rotation turns or cap slots a batch of new leads was decided on
    (`TURN_ATTEMPTS` times): the consumers' edge tries the batch again."""


class RuleSetRefusedError(ValueError):
    """A draft rule set that cannot work for the account (its reasons, `RuleSet.refusals`)."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons


def utc_now() -> datetime:
    return datetime.now(UTC)


def clock_from(start: datetime, rate: float = 1.0) -> Clock:
    """A clock that reads `start` now and runs `rate` times real speed (ROUTER_CLOCK_START and
    ROUTER_CLOCK_RATE, tests only: a test crosses a DST change in a fraction of the real time)."""
    began = time.monotonic()
    return lambda: start + timedelta(seconds=(time.monotonic() - began) * rate)


@dataclass
class _NewLeads:
    """What routing a batch of new leads shares: their contact keys, the contacts known so far (and
    their leads' holders), the rotations' cursors (read once for the batch), its accounts' snapshots and the
    accounts read past the cache, each lead's rule choice, one `now`."""

    keys: dict[str, list[str]]
    known: dict[str, str]
    holders: dict[str, Any]
    now: datetime
    cursors: dict[str, int] = field(default_factory=dict)
    read: dict[str, int] = field(default_factory=dict)  # where the batch's decisions began on each cursor and count
    # Where each stood as read, when that is not where the decisions began (`_begin`).
    expected: dict[str, int] = field(default_factory=dict)
    redelivered: frozenset[str] = frozenset()  # the batch's leads stored before (a crash may have cut their batch)
    reread: set[str] = field(default_factory=set)
    accounts: dict[str, AccountSnapshot] = field(default_factory=dict)  # each read once per batch
    choices: dict[str, tuple[AccountSnapshot, RuleChoice]] = field(default_factory=dict)  # by lead, `_read_turns`
    usage: dict[str, CountedLeads] = field(default_factory=dict)  # by account: capped agents' counted leads
    received: dict[str, str] = field(default_factory=dict)  # each lead's `received_digest`, made once by `_fresh`


@dataclass(frozen=True, slots=True)
class _Turn:
    """Where a lead's rotation stands: its key, its cursor and (balanced) its agents' lead counts."""

    key: str
    cursor: int
    counts: dict[str, int]  # by agent id

    @property
    def read(self) -> dict[str, int]:
        """The cursor and counts as read: what `RouterService._reserve` moves them from."""
        return {self.key: self.cursor} | {_count_key(self.key, agent): n for agent, n in self.counts.items()}

    def effects(self, outcome: Outcome, known: dict[str, int]) -> Effects:
        """The rotation's moves `outcome` made, noted in `known` (later decisions of the batch see them)."""
        rotation = None if outcome.rotation is None else (self.key, outcome.rotation)
        counts = tuple((_count_key(self.key, agent), n) for agent, n in outcome.counts)
        known.update(dict(counts) | ({} if rotation is None else dict([rotation])))
        return Effects(rotation=rotation, counts=counts)


def rotation_key(account: AccountSnapshot, source_name: str, rule_id: str | None) -> str:
    """The rotation a lead takes turns in: its source's (the seeds, R6) or its routing rule's (the default
    rule's when its rule was deleted: `current_rule_id`, decision 0090)."""
    rule_id = current_rule_id(account, rule_id)
    if follows_source(account, rule_id):
        return source_key(account.account_id, source_name)
    return f"{account.account_id}:rule:{rule_id}"


def source_key(account_id: str, source_name: str) -> str:
    """A lead source's rotation: `<account>:<name>`, unless the name could spell another key (a source named
    `rule:r` was rule r's cursor, one named `rule:r@ana` its count of ana's leads): such a name, with a `:`, `@` or
    `%`, is escaped under `<account>:source:`, which no plain name (no `:`) and no rule's key can be."""
    if any(c in source_name for c in ":@%"):
        return f"{account_id}:source:{quote(source_name, safe='')}"
    return f"{account_id}:{source_name}"


def _count_key(key: str, agent_id: str) -> str:
    return f"{key}@{agent_id}"


def _turn_keys(account: AccountSnapshot, source_name: str, rule_id: str | None) -> tuple[str, list[str]]:
    """The rotation a lead of `source_name` routed by `rule_id` takes turns in, and (balanced) the agents
    whose lead counts it reads."""
    rule_id = current_rule_id(account, rule_id)
    key = rotation_key(account, source_name, rule_id)
    action = account.rules.action_of(rule_id) if rule_id is not None else None
    if isinstance(action, RotationAction) and action.mode is RotationMode.BALANCED:
        return key, [a.agent_id for a in pool_of(account, source_name, rule_id).who.eligible]
    return key, []


@dataclass(frozen=True, slots=True)
class _Decided:
    outcome: Outcome
    turn: _Turn
    existing: str | None  # the lead a repeat contact merges into (R1)


def _nothing() -> None:
    return None


@dataclass(frozen=True, slots=True)
class _Write:
    """A routing record's next version, to store by compare-and-set, and what to do once stored."""

    new: RoutingRecord | None
    stored: Callable[[], None] = _nothing
    read: Mapping[str, int] = field(default_factory=dict)  # the rotation's cursor and counts it was decided on
    within_caps: bool = True  # decided within the agents' caps (False: by hand, a broker's choice past them)


AGAIN = _Write(None)  # `decide` did something first (flushed the record): read the record again

Check = Callable[[RoutingRecord | None], bool]
Decide = Callable[[RoutingRecord, LeadState], Awaitable[_Write | None]]


def _logged(message: str, lead_id: str, explanation: str) -> Callable[[], None]:
    return lambda: log.info(message, extra={"lead_id": lead_id, "explanation": explanation})


@dataclass
class _Effects:
    """The side effects records carry to `flush`, merged: rotations' furthest positions, contact keys
    to register (first lead wins), contact keys to forget by lead."""

    positions: dict[str, int] = field(default_factory=dict)
    lead_by_key: dict[str, str] = field(default_factory=dict)
    forget: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, records: list[RoutingRecord]) -> _Effects:
        merged = cls()
        for record in records:
            effects = record.outbox.effects
            for key, position in (*([effects.rotation] if effects.rotation else ()), *effects.counts):
                merged.positions[key] = max(merged.positions.get(key, 0), position)
            for key in effects.contacts:
                merged.lead_by_key.setdefault(key, effects.contacts_lead or record.lead_id)
            if effects.forget_contacts:
                merged.forget[record.lead_id] = list(effects.forget_contacts)
        return merged


def _turns(before: RoutingRecord, after: RoutingRecord) -> frozenset[str]:
    """The pass's shared state a change took a turn of: rotations' cursors and counts it moved, and the caps of
    the agents the lead stopped or started counting against (a slot freed is a turn too: a later record may take
    it)."""
    effects = after.outbox.effects
    keys = {key for key, _ in (*([effects.rotation] if effects.rotation else ()), *effects.counts)}
    caps = counted(before.state) ^ counted(after.state)
    return frozenset(keys | {f"cap:{agent}" for agent in caps})


@dataclass
class RouterService:
    records: RoutingRecords
    accounts: AccountSource
    contacts: ContactIndex
    rotations: RotationCursors
    publish: PublishRaw
    metrics: RouterMetrics
    clock: Clock = utc_now
    sweep_batch: int = 200
    sweep_concurrency: int = 16
    erasures: ErasureLog | None = None  # needed for EraseContact commands only
    capacity: CapacityLog | None = None  # needed for lead caps only (issue 15): without it, caps are not checked
    # Told each deadline this process stores, so the sweeper can sleep until the earliest (decision 0052).
    on_deadline: Callable[[int | None], None] = lambda _ms: None
    # Wall-clock seconds, which outbox documents are stamped and judged stale by (tests move it).
    wall_clock: Callable[[], float] = time.time
    # How old a departure must be before its leads are released: every replica's account snapshot (cached up to
    # `ROUTER_CONFIG_CACHE_SECONDS`) has read the agent's status by then, so none gives it a lead after the release.
    departures_settle_seconds: float = 0.0
    # Batches whose outbox documents this process is writing or publishing now: never "stale" to its sweeper.
    _batches_in_flight: set[str] = field(default_factory=set, init=False, repr=False)
    _deferred_passes: int = field(default=0, init=False, repr=False)  # passes in a row whose changes were deferred

    # --- intake ------------------------------------------------------------------------------

    async def on_lead_received(self, event: LeadReceived, *, trace: str | None = None) -> None:
        """Route one lead (see on_leads_received)."""
        for _index, exc in await self.on_leads_received([event], traces=[trace]):
            raise exc

    async def on_leads_received(
        self, events: list[LeadReceived], *, traces: Sequence[str | None] = ()
    ) -> BatchRejections:
        """Route each received lead exactly once, however often it is delivered (I1).

        `traces`: each event's record's `traceparent` (tracing on), kept with its outbox so the
        lead's events are published in its trace, not in that of the batch's first record.
        """
        stored = await self.records.get_many([str(e.event_id) for e in events])
        redelivered = list(
            {str(e.event_id): stored[str(e.event_id)] for e in events if str(e.event_id) in stored}.values()
        )
        # Records a crash left unflushed (stored, offsets not committed) are finished before
        # anything behind them is decided: their contact keys are then known to a repeat later
        # in this batch (R1), and the rotation goes on after them (decision 0022).
        await self._finish_batches(r.outbox.batch for r in redelivered if r.outbox.batch is not None)
        await self.flush(redelivered)
        fresh, rejections, received = _fresh(events, stored)
        keys = {lead_id: _contact_keys(event) for lead_id, (_, event) in fresh.items()}
        known, holders, erased = await self._known_contacts(sorted({k for ks in keys.values() for k in ks}))
        if erased:
            self._drop_made_before_erasure(fresh, keys, erased)
        for _ in range(TURN_ATTEMPTS):
            batch = _NewLeads(keys=keys, known=dict(known), holders=dict(holders), now=self.clock(),
                              redelivered=frozenset(r.lead_id for r in redelivered), received=received)  # fmt: skip
            await self._read_turns(fresh, batch)
            decided, refused = await self._decided(fresh, batch, traces)
            changes, by = [(None, record) for record, _ in decided], uuid.uuid4().hex
            records = await self._reserve(changes, batch.read, batch.expected, by=by)
            if records is not None:
                break
            self.metrics.cas_conflicts.labels("turns").inc()  # another decider took a turn or slot: decide again
        else:
            raise TurnsContendedError(
                f"{len(fresh)} leads: their turns kept being taken under {TURN_ATTEMPTS} attempts"
            )
        rejections += refused
        for _, rule in decided:
            self.metrics.decisions.labels(rule).inc()
        # The batch's outboxes wait in outbox documents (decision 0068): dropped once published.
        batch_id = str(uuid.uuid4())
        self._batches_in_flight.add(batch_id)
        try:
            try:
                ours, documents = await self._store(records, batch_id)
            except ContactErasedMeanwhileError:
                await self._put_back_holds(by, records)  # refused before anything was stored: tried again later
                raise
            stored_here = {o.lead_id for o in ours}
            if not_ours := [r for r in records if r.lead_id not in stored_here]:
                await self._put_back_holds(by, not_ours)  # another replica stored them (or they went out late)
            await self.flush(ours, clear=False)
            await self.records.end_batch(documents)
        finally:
            self._batches_in_flight.discard(batch_id)
        return rejections

    async def _decided(
        self, fresh: dict[str, tuple[int, LeadReceived]], batch: _NewLeads, traces: Sequence[str | None]
    ) -> tuple[list[tuple[RoutingRecord, str]], BatchRejections]:
        """The batch's new leads decided in order (each record with the rule that decided it), and those refused."""
        decided: list[tuple[RoutingRecord, str]] = []
        refused: BatchRejections = []
        for lead_id, (index, event) in fresh.items():
            try:
                made = await self._decide_new(lead_id, event, batch)
            except (RoutingRejected, ValidationError) as exc:
                refused.append((index, exc))
                continue
            trace = traces[index] if index < len(traces) else None
            decided.append((self._new_record(lead_id, event, made, batch, trace=trace), _rule(made.outcome)))
        return decided, refused

    async def _reserve(
        self,
        changes: Sequence[tuple[LeadState | None, RoutingRecord]],
        read: Mapping[str, int],
        expected: Mapping[str, int] | None = None,
        *,
        by: str,
        within_caps: bool = True,
    ) -> list[RoutingRecord] | None:
        """Take the turns and cap slots the changed records (each with its lead's state before) were decided on,
        before they are stored; None when another decider (a sweeper, a consumer, any replica) took one since they
        were read: nothing is taken then, and the caller decides again (decisions 0010 and 0061, amended in session
        32). See `_reserve_by_account`; here all or nothing."""
        reserved, contended = await self._reserve_by_account(changes, read, expected, by=by, within_caps=within_caps)
        return None if contended else reserved

    async def _reserve_by_account(
        self,
        changes: Sequence[tuple[LeadState | None, RoutingRecord]],
        read: Mapping[str, int],
        expected: Mapping[str, int] | None = None,
        *,
        by: str,
        within_caps: bool = True,
        whole: bool = True,
    ) -> tuple[list[RoutingRecord], set[str]]:
        """The records whose turns and slots were taken, and the accounts where another decider took one (nothing of
        theirs is taken then; `whole`: any such account, and nothing of any account is taken). First the holds of
        capped accounts, pending in the decider's name `by` (each decider drops its own alone: at flush once the
        records are stored and their counts held for good, or here when they lose), then each agent the changes
        started counting a lead against read again: past a cap means another decider gave it the slot too
        (`_past_caps`); then each rotation cursor and count moved from its value
        as `read`, in one command (`RotationCursors.take`; `expected`: where one stood when it is not where the
        decisions began, a batch decided again after a crash cut it; `within_caps` False: decided past the caps, by
        hand, so not read again). What was taken for a contended account goes back. The records come back without
        the moves taken (flush moves nothing more) and naming `by` (flush holds their counts for good, then drops
        `by`'s pending holds)."""
        capped = await self._capped_accounts([record for _, record in changes])
        # What a change starts counting is held now, pending; what it stops counting only once it is stored (at
        # flush): a slot is not freed for another decider by a change that may still lose (helper 157). Pending holds
        # are this decider's own: another's put-back never drops them (helper 160's review, session 33).
        holds = [(r.lead_id, r.account_id, tuple(sorted(started))) for before, r in changes
                 if r.account_id in capped and r.outbox.effects.capacity is not None
                 and (started := _started(before, r))]  # fmt: skip
        contended: set[str] = set()
        if holds and self.capacity is not None:
            held_now = Place(to_ms(self.clock()) or 0, by)
            await self.capacity.pend(by, holds, held_now.at_ms)
            if within_caps:
                for account_id in sorted({account_id for _, account_id, _ in holds}):
                    ours = [c for c in changes if c[1].account_id == account_id]
                    if await self._past_caps(ours, {account_id: capped[account_id]}, held_now):
                        contended.add(account_id)
        owner = _key_owners([record for _, record in changes])
        moves = {} if whole and contended else _moves([r for _, r in changes], read, expected or {})
        moves = {key: take for key, take in moves.items() if owner[key] not in contended}
        lost = await self.rotations.take(moves) if moves else set()
        contended |= {owner[key] for key in lost}
        if whole and contended:
            contended |= {record.account_id for _, record in changes}
        if back := {key: Take(t.to, t.expected, t.expected) for key, t in moves.items()
                    if key not in lost and owner[key] in contended}:  # fmt: skip
            await self.rotations.take(back)  # taken on its own: goes back to where it stood, unless moved since
        if holds and contended:
            await self._put_back_holds(by, [r for _, r in changes if r.account_id in contended])
            await self._let_rivals_settle(by, [h for h in holds if h[1] in contended], capped)
        pending = {lead_id for lead_id, _, _ in holds}
        return [
            _taken(record, moves, pending=(by,) if record.lead_id in pending else ())
            for _, record in changes
            if record.account_id not in contended
        ], contended

    async def _capped_accounts(self, records: list[RoutingRecord]) -> dict[str, AccountSnapshot]:
        """The records' accounts where somebody has a cap (their leads are counted), when caps are checked."""
        if self.capacity is None or not records:
            return {}
        found = await self.accounts.get_many(sorted({record.account_id for record in records}))
        return {account_id: a for account_id, a in found.items() if a is not None and a.counts_leads}

    async def _past_caps(
        self,
        changes: Sequence[tuple[LeadState | None, RoutingRecord]],
        capped: dict[str, AccountSnapshot],
        pending: Place,
    ) -> bool:
        """Whether another decider took a slot the changes were decided on: an agent they started counting a lead
        against is past a cap, read after their holds, and their leads are not first in line for it (`Place.rank`: one
        order over every agent, each decider's pending holds together). First in line at every such agent, a decider
        reads again while the others give their holds back (they see the same line), a few times; then it too gives
        up. Two deciders at one pace, for one agent or several, so never both back off for ever (helper 157; session
        33), and never both go on past a cap: one that goes on read the agent within it."""
        for attempt in range(KEEP_READS):
            first = await self._first_in_line(changes, capped, pending)
            if first is None:
                return False
            if not first:
                return True
            await asyncio.sleep(KEEP_WAIT_SECONDS * (attempt + 1))  # first in line: the others give their holds back
        return True

    async def _let_rivals_settle(
        self, by: str, holds: list[tuple[str, str, tuple[str, ...]]], capped: dict[str, AccountSnapshot]
    ) -> None:
        """Having given its holds back, a decider waits (a few reads, `SETTLE_READS`) until the other deciders' pending
        holds on the agents it wanted are stored for good or given back: deciding again at once, it would read a
        rival's pending hold as the agent's lead, pass the agent by and take the turn, and the rival, first in line
        and then finding its turn taken, would give its hold back too: the agent's slot left unused by both (helper
        182's review of decision 0061). Past the reads (a crash's leftover hold stands up to its time) it decides
        again as before: a slot may go unused, never one taken twice."""
        assert self.capacity is not None  # noqa: S101 (holds are only made where leads are counted)
        wanted: dict[str, set[str]] = {}
        for _, account_id, agent_ids in holds:
            wanted.setdefault(account_id, set()).update(agent_ids)
        for attempt in range(SETTLE_READS):
            now, rivals = self.clock(), False
            for account_id, agents in wanted.items():
                since = to_ms(period_start(now, capped[account_id].time_zone)) or 0
                places = await self.capacity.places(account_id, sorted(agents), since)
                rivals = rivals or any(p.by not in (None, by) for line in places.values() for p in line.values())
            if not rivals:
                return
            await asyncio.sleep(KEEP_WAIT_SECONDS * (attempt + 1))

    async def _first_in_line(
        self,
        changes: Sequence[tuple[LeadState | None, RoutingRecord]],
        capped: dict[str, AccountSnapshot],
        pending: Place,
    ) -> bool | None:
        """None when no agent the changes started counting a lead against is past a cap; else whether the changes'
        leads are first in line for every slot past one (`_line`). Every pending hold stands in line, another
        decider's of one of the changes' own leads too: it may be a rival's deciding the same lead now, which may win
        it (helper 162), as it may be a crash's leftover (helper 161; it stands until its time is past: decision
        0061)."""
        assert self.capacity is not None  # noqa: S101 (only asked where leads are counted)
        now, first = self.clock(), None
        for account_id, account in capped.items():
            ours = [c for c in changes if c[1].account_id == account_id]
            mine, freed = _moved_counts(ours)
            if not mine:
                continue
            since = to_ms(period_start(now, account.time_zone)) or 0
            places = await self.capacity.places(account_id, sorted(mine), since)
            for agent_id, leads in mine.items():
                agent = account.agent(agent_id)
                caps = agent.availability.caps if agent is not None and agent.availability is not None else None
                line = _line(places.get(agent_id, {}), leads, freed.get(agent_id, set()), pending)
                times = (from_epoch_ms(place.at_ms) for place in line.values())
                if caps is not None and past_cap(caps, usage_of(times, now, account.time_zone)):
                    ahead = in_line(caps, line, leads, now, account.time_zone)
                    first = ahead if first is None else first and ahead
        return first

    async def _put_back_holds(self, by: str, records: list[RoutingRecord]) -> None:
        """Drop the decider `by`'s pending holds of the records' leads, whose changes were not stored. Only its own:
        another decider's pending hold of the same lead (two sweepers firing it) is still in flight."""
        if self.capacity is not None and records:
            await self.capacity.unpend([by], [record.lead_id for record in records])

    async def _not_into_erased(self, records: list[RoutingRecord]) -> None:
        """Refuse to store a repeat (R1) merged into a lead of an earlier batch that an erasure scrubbed since the
        batch read the contact's keys: its inquiry, carrying the contact, would be logged on the erased lead after
        `ContactErased`, and its keys would point at it again. The batch is tried again (nothing of it stored); the
        keys are gone by then (an erasure forgets them before it scrubs), so the repeat is a new lead, as an inquiry
        after an erasure is (decision 0050). One read, only for a batch with such repeats.

        Read after the batch's outbox documents are written and before its records (`insert_batch`): an erasure
        scrubbing the lead after this read finds the documents when it looks again after its scrub
        (`_erase_contact`), so one of the two always sees the other."""
        ours = {r.lead_id for r in records}
        targets = {lead for r in records if (lead := r.outbox.effects.contacts_lead) is not None and lead not in ours}
        if not targets:
            return
        stored = await self.records.readable_many(sorted(targets), read="contacts")
        if erased := [lead for lead, r in stored.items() if not r.keys_may_name]:
            # Keys naming an erased lead are forgotten, as its erasure does: one registered again after the erasure's
            # last pass and kept (by a process that died before its `_forget_if_erased`) would else refuse every later
            # repeat of the contact.
            await self.contacts.forget_leads(erased)
            raise ContactErasedMeanwhileError(len(erased))

    async def _known_contacts(self, keys: list[str]) -> tuple[dict[str, str], dict[str, str | None], dict[str, int]]:
        """The contact keys known (key -> lead), those leads' holders (R1), and the erasures of any of the keys
        (erased id -> when, decision 0106). A lead whose record this version cannot read (a newer version's) counts
        as unknown, logged by id and counted (`contacts`): it must not dead-letter every new lead of its contact.
        Its keys still name it, so its contact's later leads find it once a version that reads it runs."""
        known, erased = await self.contacts.find_with_erasures(keys)
        records = await self.records.readable_many(sorted(set(known.values())), read="contacts")
        holders = {lead_id: r.state.holder if r.state is not None else None for lead_id, r in records.items()}
        return {key: lead_id for key, lead_id in known.items() if lead_id in records}, holders, erased

    def _drop_made_before_erasure(
        self, fresh: dict[str, tuple[int, LeadReceived]], keys: dict[str, list[str]], erased: dict[str, int]
    ) -> None:
        """Leave out of the batch each inquiry made before its contact was erased (decision 0106): the person asked
        to be forgotten after it. It comes late (a dead letter replayed, a consumer far behind, a partner's resend)
        and routed it would bring the person back into every store; it is taken unrouted, with no record, no
        event, no dead letter (which would keep the person too). Logged by id and counted."""
        for lead_id, (_, event) in list(fresh.items()):
            if made_before_erasure(keys[lead_id], to_ms(event.occurred_at) or 0, erased):
                del fresh[lead_id], keys[lead_id]
                self.metrics.erased_inquiries.inc()
                log.info("inquiry made before its contact's erasure dropped", extra={"lead_id": lead_id})

    async def _store(self, records: list[RoutingRecord], batch_id: str) -> tuple[list[RoutingRecord], list[str]]:
        """Store a batch's new records with their outboxes in outbox documents (decision 0068); returns
        those this call stored, with their outboxes, and the documents' ids. A record stored before (a
        replica racing) is finished here from its own outbox or document.

        Records stored more than STALE_BATCH_SECONDS after their documents (a stall) may name a document another
        replica's sweeper dropped while they were not stored yet: their outboxes go into the records instead
        (compare-and-set on version 1), published and cleared there, so a crash or a failed publish after this
        leaves them to the redelivery or `republish_stale` (decision 0068). Returns none of them then.
        Lateness is measured after other replicas' records are flushed too, so a batch stored in time may take
        this path after a sweeper published it from its document: the same events again (same ids and bytes).
        """
        began, now_ms = time.monotonic(), self._wall_ms()  # the wall clock, as `republish_stale` reads it
        checked = partial(self._not_into_erased, records)
        stored, documents = await self.records.insert_batch(
            records, batch_id=batch_id, now_ms=now_ms, before_records=checked
        )
        await self._finish_batches(r.outbox.batch for r in stored if r.outbox.batch not in (None, *documents))
        await self.flush([r for r in stored if r.outbox.batch is None])
        ours = [r for r in stored if r.outbox.batch in documents]
        late_ms = max(self._wall_ms() - now_ms, int((time.monotonic() - began) * 1000))
        if ours and late_ms > STALE_BATCH_SECONDS * 1000:
            kept = [replace(r, outbox=replace(r.outbox, batch=None)) for r in ours]
            await self.flush([r for r in kept if await self.records.compare_and_set(r, expected_version=1)])
            return [], documents
        return ours, documents

    def _wall_ms(self) -> int:
        return int(self.wall_clock() * 1000)

    async def _finish_batches(self, doc_ids: Iterable[str | None]) -> None:
        """Publish and apply what outbox documents a crash left, then drop them (decision 0068).

        Only a record that still names its document, unchanged since (version 1), is finished from it: a
        lead with no record is being decided again (a redelivery) or still being stored by the process
        that wrote the document. So a document is dropped only once every lead it lists has a record
        (those naming it published from it), or when it is ORPHAN_BATCH_SECONDS old: a writer storing its
        records that late keeps their outboxes in them (`_store`). Else its writer, a redelivery or the
        sweeper finishes it later.
        """
        documents = await self.records.batch_outboxes(sorted({i for i in doc_ids if i is not None}))
        if not documents:
            return
        listed = sorted({lead for document in documents.values() for lead in document.outboxes})
        stored = await self.records.readable_many(listed)  # one this version cannot read holds up no other
        await self.flush(
            [replace(r, outbox=documents[b].outboxes[r.lead_id]) for r in stored.values()
             if (b := r.outbox.batch) in documents and r.version == 1 and r.lead_id in documents[b].outboxes],
            clear=False,
        )  # fmt: skip
        orphan_ms = self._wall_ms() - ORPHAN_BATCH_SECONDS * 1000
        await self.records.end_batch(
            sorted(i for i, d in documents.items() if d.since_ms <= orphan_ms or set(d.outboxes) <= stored.keys())
        )

    async def _read_turns(self, fresh: dict[str, tuple[int, LeadReceived]], batch: _NewLeads) -> None:
        """Read the batch's accounts (those not cached: one query of accounts and one of agents for all) and
        the cursors of every rotation its leads take turns in (one query); keep each lead's rule choice for
        `_decide_new`. A lead whose account is unknown or whose rule changes when its account is read again
        (R4) is left to `_decide_new`, which reads what it still misses."""
        unread = sorted({event.account_id for _, event in fresh.values()} - batch.accounts.keys())
        found = await self.accounts.get_many(unread)
        batch.accounts.update((account_id, a) for account_id, a in found.items() if a is not None)
        wanted: list[str] = []
        for lead_id, (_, event) in fresh.items():
            account = batch.accounts.get(event.account_id)
            if account is None:
                continue  # an unknown account: rejected by `_decide_new`
            try:
                lead = _new_lead(lead_id, event)
            except ValidationError:
                continue  # rejected by `_decide_new`
            choice = rule_for(lead, account, batch.now)
            batch.choices[lead_id] = (account, choice)
            key, agents = _turn_keys(account, lead.summary.source.name, rule_id_of(choice, account))
            wanted += [key, *(_count_key(key, agent) for agent in agents)]
        if missing := sorted(set(wanted) - batch.cursors.keys()):
            ours = set(fresh) | batch.redelivered
            for key, taken in (await self.rotations.read_many(missing)).items():
                begin = _begin(taken, ours, batch.redelivered)
                batch.cursors[key] = batch.read[key] = begin
                if begin != taken.position:
                    batch.expected[key] = taken.position

    async def _decide_new(self, lead_id: str, event: LeadReceived, batch: _NewLeads) -> _Decided:
        account = batch.accounts.get(event.account_id) or await self._account(event.account_id)
        assigned = event.payload.source.assigned_agent_id
        if assigned and account.agent(assigned) is None and event.account_id not in batch.reread:
            # An agent added since the snapshot was cached keeps its lead (R4): read once more.
            batch.reread.add(event.account_id)
            account = batch.accounts[event.account_id] = await self._account(event.account_id, fresh=True)
        lead = _new_lead(lead_id, event)
        chosen = batch.choices.get(lead_id)
        choice = chosen[1] if chosen is not None and chosen[0] is account else rule_for(lead, account, batch.now)
        turn = await self._turn(
            account, lead.summary.source.name, rule_id_of(choice, account), batch.cursors, read=batch.read
        )
        existing = next((batch.known[k] for k in batch.keys[lead_id] if k in batch.known), None)
        context = RoutingContext(
            existing=None if existing is None else ExistingContact(existing, batch.holders.get(existing)),
            rotation=turn.cursor,
            counts=turn.counts,
            usage=await self._usage(account, batch.now, batch.usage, deciding=lead_id),
            choice=choice,
        )
        return _Decided(route_new_lead(lead, account, context, batch.now), turn, existing)

    async def _turn(
        self,
        account: AccountSnapshot,
        source_name: str,
        rule_id: str | None,
        known: dict[str, int],
        *,
        read: dict[str, int] | None = None,
    ) -> _Turn:
        """The rotation of a lead of `source_name` routed by `rule_id`, read past what is `known` (and noted in
        `read`, as read)."""
        key, agents = _turn_keys(account, source_name, rule_id)
        if missing := [k for k in [key, *(_count_key(key, a) for a in agents)] if k not in known]:
            found = await self.rotations.get_many(missing)
            known.update(found)
            if read is not None:
                read.update(found)
        return _Turn(key, known[key], {a: known[_count_key(key, a)] for a in agents})

    def _new_record(
        self, lead_id: str, event: LeadReceived, decided: _Decided, batch: _NewLeads, *, trace: str | None
    ) -> RoutingRecord:
        """The new lead's routing record (or its merge into an existing lead, R1), with its outbox."""
        outcome, keys = decided.outcome, tuple(batch.keys[lead_id])
        turn = decided.turn.effects(outcome, batch.cursors)
        state = None if outcome.state is None else outcome.state.evolve(version=1)
        merged_into = None
        if state is not None:
            # Later leads of this batch with the same email or phone are R1 on this one.
            for key in keys:
                batch.known.setdefault(key, lead_id)
            batch.holders[lead_id] = state.holder
        else:
            merged_into = decided.existing
            assert merged_into is not None  # noqa: S101 (only R1 merges, into an existing lead)
            # The repeat's email and phone are the contact's now: an inquiry by a new phone
            # or email alone, later, finds the same lead (R1).
            for key in keys:
                batch.known.setdefault(key, merged_into)
        effects = Effects(
            rotation=turn.rotation,
            counts=turn.counts,
            contacts=keys,
            contacts_lead=merged_into,
            capacity=_recount(None, outcome, batch.usage),
        )
        outbox = self._outbox(
            outcome,
            source_id=event.event_id,
            correlation_id=event.correlation_id,
            account_id=event.account_id,
            now=batch.now,
            effects=effects,
            trace=trace,
            version=None if state is None else (lead_id, 1),
        )
        decision = outcome.decision() if state is not None else None
        return RoutingRecord(
            lead_id, event.account_id, 1, state, str(event.correlation_id), outbox=outbox,
            decisions=(decision.model_dump_json(exclude_defaults=True),) if decision is not None else (),
            received=batch.received[lead_id],
        )  # fmt: skip

    # --- agents' activity --------------------------------------------------------------------

    async def on_activities(self, events: list[LeadActivity], *, traces: Sequence[str | None] = ()) -> BatchRejections:
        """A batch of agents' actions: its leads together (at most `CONCURRENT_LEADS` at a time), each lead's in
        order, each by `on_activity`'s compare-and-set, as two replicas would, in the trace of the record that
        brought it (decision 0109). One refused (a poison message) is the batch's rejection; any other failure is
        raised as it is once every lead's actions ended (none cancelled half-way: a claim's pending cap hold would
        stay): the edge tries the batch again, its actions applied already known by their ids (`ACTIVITY_BATCH`)."""
        by_lead: dict[str, list[tuple[int, LeadActivity]]] = {}
        for index, event in enumerate(events):
            by_lead.setdefault(str(event.payload.lead_id), []).append((index, event))
        rejections: BatchRejections = []
        limit = asyncio.Semaphore(CONCURRENT_LEADS)

        async def one_lead(actions: list[tuple[int, LeadActivity]]) -> None:
            async with limit:
                for index, event in actions:
                    try:
                        with tracing.continued(traces[index] if index < len(traces) else None):
                            await self.on_activity(event)
                    except POISON_ERRORS as exc:
                        rejections.append((index, exc))

        ended = await asyncio.gather(*(one_lead(actions) for actions in by_lead.values()), return_exceptions=True)
        if failed := next((outcome for outcome in ended if isinstance(outcome, BaseException)), None):
            raise failed
        return sorted(rejections, key=lambda rejection: rejection[0])

    async def on_activity(self, event: LeadActivity) -> None:
        """Apply an agent's action (R8 claims); a race with another claim or an expiry has one winner (I2)."""
        lead_id = str(event.payload.lead_id)
        payload = event.payload
        activity = Activity(
            payload.agent_id,
            payload.action,
            payload.message,
            event.event_id,
            event.occurred_at,
            offer_round=payload.offer_round,
        )

        def check(record: RoutingRecord | None) -> bool:
            if record is None or not record.is_lead or record.account_id != event.account_id:
                raise RoutingRejected(f"unknown lead {lead_id} in account {event.account_id}")
            return True

        async def decide(record: RoutingRecord, state: LeadState) -> _Write | None:
            now = self.clock()
            # Only an active agent of the office claims (one who left may still hold an offer until
            # its ReleaseAgentLeads is applied).
            account = await self._account(event.account_id)
            agent = account.agent(activity.agent_id)
            if activity.action is ActivityAction.ASK_BACK:  # a missed offer asked back (issue 15)
                cannot = await self._cannot_take(state, agent, account, now, pond_only=False)
                outcome = on_ask_back(state, activity, account, now, cannot=cannot)
            else:
                cannot = await self._cannot_take(state, agent, account, now)
                can_claim = agent is not None and agent.active and cannot is None
                outcome = on_activity(state, activity, now, can_claim=can_claim, cannot=cannot)
            outcome = idle_watch(state, outcome, activity, account, now)
            if outcome.state == state and not outcome.events:
                return None  # a view: nothing changes, nothing to tell
            claimed = outcome.state is not None and outcome.state.holder != state.holder
            return _Write(
                self._next_record(record, outcome, source_id=event.event_id, now=now),
                stored=self.metrics.claims.inc if claimed else _nothing,
            )

        await self._compare_and_set(lead_id, event.event_id, "activity", check, decide)

    async def _compare_and_set(
        self, lead_id: str, input_id: uuid.UUID, path: str, check: Check, decide: Decide, *, first_events: bool = True
    ) -> bool:
        """The loop every change of one routing record goes through (I2): read it; `check` it (raise to
        refuse, False to leave it); if it has `input_id` already (a redelivery), finish what a crash may
        have left; else `decide` its next version and store it only if nobody changed the record
        meanwhile, else read again. True when this call stored a change. `first_events`: finish the batch
        document the record names first (False: the caller did, `_erase_contact`)."""
        for _ in range(CAS_ATTEMPTS):
            record = await self.records.get(lead_id)
            if not check(record):
                return False
            assert record is not None  # noqa: S101 (a check lets no missing record through)
            assert record.state is not None  # noqa: S101 (nor a merged repeat)
            if first_events and record.outbox.batch is not None:
                # Its first events may still wait in its batch's document (a crash): out before any change
                # (the change's own outbox does not carry them, decision 0068). A miss when published.
                await self._finish_batches([record.outbox.batch])
            if str(input_id) in record.inputs:
                await self.flush([record])  # a redelivery: finish what a crash may have left
                return False
            write = await decide(record, record.state)
            if write is None:
                return False
            if write.new is None:  # AGAIN
                continue
            new = replace(write.new, inputs=record.remembering(str(input_id), RECENT_INPUTS).inputs)
            by = uuid.uuid4().hex
            reserved = await self._reserve([(record.state, new)], write.read, by=by, within_caps=write.within_caps)
            if reserved is not None:
                if await self.records.compare_and_set(reserved[0], expected_version=record.version):
                    write.stored()
                    await self.flush(reserved)
                    return True
                # Another change of the lead won: what was reserved for this one goes back (`_give_back`).
                await self._give_back([(record, new)], [], write.read, by)
            self.metrics.cas_conflicts.labels(path).inc()
        raise RuntimeError(f"lead {lead_id} kept changing under {CAS_ATTEMPTS} attempts")

    # --- office transfers (T2) and lead sharing (T1) ----------------------------------------------

    async def on_command(self, command: LeadCommand) -> None:
        """Apply crm-api's command: move a lead to another office, tell an office a team member joined
        (and release the member's leads in the office it left), give a lead to a realtor, release
        the leads of an agent who was deactivated, or erase a contact."""
        if isinstance(command, TransferLead):
            await self._transfer_lead(command)
        elif isinstance(command, ShareLead):
            await self._share_lead(command)
        elif isinstance(command, ReleaseAgentLeads):
            departure = Departure(command.payload.agent_id, command.payload.reason)
            await self._settled(command.occurred_at)
            await self._release_agent_leads(command.account_id, departure, command.event_id)
        elif isinstance(command, DistributeLead):
            await self._distribute_lead(command)
        elif isinstance(command, ReturnLead):
            await self._return_lead(command)
        elif isinstance(command, InviteRealtor):
            await self._relay_invitation(command)
        elif isinstance(command, EraseContact):
            await self._erase_contact(command)
        else:
            await self._relay_team_member(command)
            departure = Departure(command.payload.agent_id, AgentDeparture.MOVED)
            await self._settled(command.occurred_at)
            await self._release_agent_leads(command.account_id, departure, command.event_id)

    async def _settled(self, occurred_at: datetime) -> None:
        """Wait until a departure (crm-api saves the status, then sends it) is `departures_settle_seconds` old: a
        replica whose snapshot still said the agent was active gave it a lead in those seconds, which the release then
        takes back; released before, that lead stayed with the agent who left (helper 188's review). A command
        read late (a redelivery, a consumer behind) waits nothing."""
        wait = self.departures_settle_seconds - (self.wall_clock() - occurred_at.timestamp())
        if wait > 0:
            await asyncio.sleep(min(wait, self.departures_settle_seconds))

    async def _release_agent_leads(self, account_id: str, departure: Departure, command_id: uuid.UUID) -> None:
        """An agent left the office: each lead it holds or is offered changes by compare-and-set,
        idempotent by the command's id; its events' ids derive from the command and the lead. Nothing when the agent
        is back in the office by now (`Departure.holds_in`)."""
        account = await self._account(account_id, fresh=True)
        if not departure.holds_in(account):
            log.info(
                "departure of an agent back in its office: nothing released", extra={"command_id": str(command_id)}
            )
            return
        for found in await self.records.of_agent(account_id, departure.agent_id):
            lead_id = found.lead_id

            def check(record: RoutingRecord | None) -> bool:
                return record is not None and record.is_lead and record.account_id == account_id

            async def decide(record: RoutingRecord, state: LeadState, lead_id: str = lead_id) -> _Write | None:
                turn = await self._turn(account, state.source_name, state.rule_id, {})
                now = self.clock()
                usage = await self._usage(account, now, {}, deciding=lead_id)
                outcome = on_agent_left(state, departure, account, Standing(turn.cursor, turn.counts, usage), now)
                if outcome.state == state and not outcome.events:
                    return None
                effects = turn.effects(outcome, {})
                source_id = derived_event_id(command_id, f"release:{lead_id}")
                return _Write(
                    self._next_record(record, outcome, source_id=source_id, now=now, effects=effects),
                    stored=_logged("agent's lead released", lead_id, outcome.explanation),
                    read=turn.read,
                )

            await self._compare_and_set(lead_id, command_id, "release", check, decide)

    async def _share_lead(self, command: ShareLead) -> None:
        """T1, idempotent by the command's id (one per share and lead).

        The lead stays in its account: its events are the record's account's, as on every
        other path, and its contact keys do not move.
        """
        share = LeadShare(
            account_id=command.account_id,
            lead_id=str(command.payload.lead_id),
            share_id=command.payload.share_id,
            realtor_id=command.payload.realtor_id,
            realtor_name=command.payload.realtor_name,
            assigned_by=command.payload.assigned_by,
            by_user_id=command.payload.by_user_id,
        )
        if await self._change_lead(command, "share", lambda state, _now: on_lead_shared(state, share)):
            self.metrics.transfers.labels("share").inc()

    async def _distribute_lead(self, command: DistributeLead) -> None:
        """A lead assigned or offered by hand, idempotent by the command's id (one per distribution and lead)."""
        p = command.payload
        window = None if p.claim_window_seconds is None else timedelta(seconds=p.claim_window_seconds)
        distribution = Distribution(p.agent_id, p.mode, window, p.note, p.by_user_id)
        account = await self._account(command.account_id, fresh=True)
        await self._change_lead(
            command, "distribute", lambda state, now: on_distributed(state, distribution, account, now)
        )

    async def _return_lead(self, command: ReturnLead) -> None:
        """The holder gives the lead back to the broker pool; idempotent by the command's id."""
        p = command.payload
        account = await self._account(command.account_id)
        await self._change_lead(command, "return", lambda state, _now: on_returned(state, p.agent_id, p.note, account))

    async def _change_lead(
        self,
        command: ShareLead | DistributeLead | ReturnLead,
        path: str,
        decide: Callable[[LeadState, datetime], Outcome],
    ) -> bool:
        """Apply `decide` to the command's lead by compare-and-set, like a claim; True when it changed it.

        Idempotent by the command's id; a lead of another account, or merged into another (R1),
        is refused.
        """
        lead_id = str(command.payload.lead_id)

        def check(record: RoutingRecord | None) -> bool:
            if record is None or record.account_id != command.account_id:
                raise RoutingRejected(f"unknown lead {lead_id} in account {command.account_id}")
            if not record.is_lead:
                raise RoutingRejected(f"lead {lead_id} was merged into an existing contact (R1); nothing to change")
            return True

        async def change(record: RoutingRecord, state: LeadState) -> _Write | None:
            now = self.clock()
            outcome = decide(state, now)
            if outcome.state == state and not outcome.events:
                return None  # nothing to do (already applied in effect)
            return _Write(
                self._next_record(record, outcome, source_id=command.event_id, now=now),
                stored=_logged(f"lead changed by {path}", lead_id, outcome.explanation),
                within_caps=False,  # a hand offer goes to whom the broker chose, at a cap or not
            )

        return await self._compare_and_set(lead_id, command.event_id, path, check, change)

    async def _transfer_lead(self, command: TransferLead) -> None:
        """T2: a compare-and-set like a claim, idempotent by the command's id (the transfer id)."""
        lead_id = str(command.payload.lead_id)
        transfer = OfficeTransfer(command.event_id, lead_id, command.payload.by_user_id)

        def check(record: RoutingRecord | None) -> bool:
            if record is None:
                raise RoutingRejected(f"unknown lead {lead_id} in account {command.account_id}")
            if not record.is_lead:
                raise RoutingRejected(f"lead {lead_id} was merged into an existing contact (R1); nothing to move")
            return True

        async def decide(record: RoutingRecord, state: LeadState) -> _Write | None:
            source = await self._account(command.account_id)
            target = await self._account(command.payload.to_account_id)
            outcome = on_office_transfer(state, source, target, transfer)
            if outcome.state == state and not outcome.events:
                return None  # already in the target office
            contact = state.summary.contact
            # Every email and phone of the contact (its repeats' too, R1) moves: registered in
            # the new office (R1 there), dropped from the one it left where it still points at
            # the lead (a new lead there).
            moving = list(dict.fromkeys([
                *contact_keys(source.account_id, contact.email, contact.phone), *await self.contacts.of_lead(lead_id),
            ]))  # fmt: skip
            effects = Effects(
                contacts=tuple(in_account(key, target.account_id) for key in moving),
                forget_contacts=tuple(dict.fromkeys([*record.outbox.effects.forget_contacts, *moving])),
            )
            new = self._next_record(
                record, outcome, source_id=command.event_id, now=self.clock(), effects=effects,
                event_account_id=source.account_id,
            )  # fmt: skip

            def stored() -> None:
                self.metrics.transfers.labels("lead").inc()
                log.info("lead transferred", extra={"lead_id": lead_id, "explanation": outcome.explanation})

            return _Write(new, stored=stored)

        await self._compare_and_set(lead_id, command.event_id, "transfer", check, decide)

    # --- erasure (decision 0050) ---------------------------------------------------------------

    async def _erase_contact(self, command: EraseContact) -> None:
        """Forget a contact, idempotent by the command's id.

        The leads are resolved once and stored in the erasure record (`router_erasures`), because
        resolving again after the contact keys are gone would find nothing: a redelivery after a
        crash repeats the rest with the same leads and publishes the same ContactErased (same id).
        Keys go before the states are scrubbed, so an inquiry arriving meanwhile is a new lead; and after
        what the leads' outboxes still had to publish and apply (their first ones in a batch's document
        too), so no outbox registers them again.
        """
        if self.erasures is None:
            raise RuntimeError("the router was built without its erasure records")
        erasure_id = str(command.event_id)
        request = await self.erasures.get(erasure_id)
        if request is not None and request.done:
            return
        pending = await self.records.pending_contacts()  # read once: to resolve the leads and to finish them
        if request is None:
            await self._account(command.account_id)  # an unknown account is poison
            p = command.payload
            resolved = tuple(await self._leads_of(command, pending))
            request = await self.erasures.start(ErasureRequest(
                erasure_id, command.account_id, resolved, p.by_user_id, p.reason,
                requested_ms=to_ms(command.occurred_at), contact_ids=await self._erased_ids(command, resolved),
            ))  # fmt: skip
        if request.done:
            return
        # Before the keys go: an inquiry made before the erasure and read after it is not routed (decision 0106).
        await self.contacts.mark_erased(list(request.contact_ids), request.requested_ms or 0)
        lead_ids = list(request.lead_ids)
        await self._publish_pending(lead_ids, pending, command.account_id)
        await self.contacts.forget_leads(lead_ids)
        for lead_id in lead_ids:
            await self._scrub(lead_id, command)
        # Looked for again after the scrub: a batch merging a repeat into one of the leads read it before its scrub
        # (else it refuses, `_not_into_erased`) and wrote its outbox document before that read, so the document is
        # found now if not above (or the batch is done): the repeat's events go out before ContactErased.
        await self._publish_pending(lead_ids, await self.records.pending_contacts(), command.account_id)
        # Again: until a lead's scrub, another replica's sweeper may finish a batch document still naming it
        # (kept while another lead it lists has no record) and register its keys anew. Scrubbed, it names none.
        await self.contacts.forget_leads(lead_ids)
        event = ContactErased.create(
            account_id=command.account_id,
            event_id=derived_event_id(command.event_id, "contact-erased"),
            correlation_id=command.correlation_id,
            occurred_at=command.occurred_at,
            payload=ContactErasedPayload(
                erasure_id=command.event_id, lead_ids=[uuid.UUID(i) for i in lead_ids],
                by_user_id=command.payload.by_user_id, reason=command.payload.reason,
            ),
        )  # fmt: skip
        await self.publish(command.account_id, event.model_dump_json().encode())
        self.metrics.events_published.inc()
        await self.erasures.finish(erasure_id, done_ms=to_ms(self.clock()) or 0)
        log.info("contact erased", extra={"erasure_id": erasure_id, "leads": len(lead_ids)})

    async def _erased_ids(self, command: EraseContact, lead_ids: tuple[str, ...]) -> tuple[str, ...]:
        """The erased ids of every key of the contact: the email and phone asked for, and those the index has for
        its leads (their repeats' too), read before the erasure forgets them."""
        keys = set(contact_keys(command.account_id, command.payload.email, command.payload.phone))
        for lead_id in lead_ids:
            keys.update(await self.contacts.of_lead(lead_id))
        return tuple(sorted(erased_id(k) for k in keys))

    async def _leads_of(self, command: EraseContact, pending: PendingContacts) -> list[str]:
        """The account's leads the request names: by the contact index (its email and phone), by the
        outboxes that will register those keys (a crash left them unapplied, or their writer is storing them: a
        new lead's first outbox in its batch's document, a moved lead's), and by id. Ids of another account,
        merged repeats (R1) and unknown ids are left out (tenant isolation). A lead an open outbox document lists
        that has no record yet is erased before it is stored, or waited for (`_erase_unstored`); so is every repeat
        an open document lists whose outbox registers the contact (its keys, or one of the leads found), in
        whichever batch: else its redelivery, finding the keys forgotten, routed it as a new lead carrying the
        contact (helper 98). A repeat's placeholder is not among the lead ids, as a stored repeat is not.
        The account of an id is settled before anything else is looked up for it (helper 101): a lead found by
        the account's keys is the account's; one named by id, or a repeat found through a lead, is only when its
        record names the account, or (no record yet) each listing of it does. So an id of another account never
        brings in that account's repeats, never makes this erasure wait, and no placeholder is stored for it."""
        p, account_id = command.payload, command.account_id
        keys = contact_keys(account_id, p.email, p.phone)
        by_keys = {*(await self.contacts.find(keys)).values(), *pending.registering(keys, ()).values()}
        named = {str(i) for i in p.lead_ids}
        records = await self.records.get_many(sorted(by_keys | named))
        wanted = sorted(
            i for i in by_keys | named
            if (i in records and records[i].account_id == account_id)
            or (i not in records and (i in by_keys or pending.lists_in(i, account_id)))
        )  # fmt: skip
        through = {o: into for o, into in pending.registering((), wanted).items() if pending.lists_in(o, account_id)}
        repeats = {o for o, into in (through | pending.registering(keys, ())).items() if o != into}
        repeats &= pending.listed.keys()
        records |= await self.records.get_many(sorted(repeats - records.keys()))
        placed: list[str] = []
        if unstored := [i for i in sorted({*wanted, *repeats}) if i not in records and i in pending.listed]:
            placed = await self._erase_unstored(unstored, pending, account_id)
            records |= await self.records.get_many([i for i in unstored if i not in placed])  # stored meanwhile
        mine = {i for i, r in records.items() if r.is_lead and r.account_id == account_id}
        return [i for i in wanted if i in mine or (i in placed and pending.merges_into(i) == i)]

    async def _erase_unstored(self, lead_ids: list[str], pending: PendingContacts, account_id: str) -> list[str]:
        """Leads open outbox documents list that have no record yet (decision 0068, helper 94); returns those of the
        account erased here. While one of their documents is younger than STALE_BATCH_SECONDS (or its batch is this
        process's, in flight), its writer is storing it: LeadsBeingStoredError, the erasure is tried again (the
        consumer's retries) once it is, rather than done without it. Older, its writer crashed (or stalled past
        the bound, and then keeps its outboxes in its records, `_store`): waiting would hold the erasure up until
        the document is dropped as an orphan (an hour), dead-lettering it meanwhile. So an erased placeholder is
        stored under each such lead of the account instead (insert: compare-and-set on "no record yet"), and its
        outboxes are taken out of the documents: no writer, redelivery or sweeper can then store or publish the
        lead. One whose record was stored meanwhile is not returned: it is erased as any stored lead."""
        listings = [(i, listing) for i in lead_ids for listing in pending.listed[i]]
        stale_ms = self._wall_ms() - STALE_BATCH_SECONDS * 1000
        if any(
            listing.since_ms > stale_ms or listing.document.rpartition("/")[0] in self._batches_in_flight
            for _, listing in listings
        ):
            raise LeadsBeingStoredError(len(lead_ids))
        others = {i for i, listing in listings if listing.account_id != account_id}  # or unknown: left out
        placed = await self.records.erase_unstored(sorted({i for i, _ in listings} - others), account_id)
        documents = sorted({listing.document for i, listing in listings if i in placed})
        await self.records.drop_from_batches(placed, documents)
        return placed

    async def _publish_pending(self, lead_ids: list[str], pending: PendingContacts, account_id: str) -> None:
        """Publish and apply what the leads' outboxes hold (a crash left it), their first ones in their
        batches' documents (decision 0068) included, and those of repeats merged into them (R1) not applied
        yet: their events, which carry the contact, go out before ContactErased, and their contact keys are
        registered before the erasure forgets them. A repeat an open document lists without a record yet is
        waited for while its writer may be storing it, else erased unstored (`_erase_unstored`)."""
        repeats = pending.registering((), lead_ids)
        records = await self.records.get_many(sorted({*lead_ids, *repeats}))
        if unstored := sorted(i for i in repeats if i not in records and pending.lists_in(i, account_id)):
            placed = await self._erase_unstored(unstored, pending, account_id)
            records |= await self.records.get_many([i for i in unstored if i not in placed])  # stored meanwhile
        await self._finish_batches(record.outbox.batch for record in records.values())
        await self.flush([record for record in records.values() if record.outbox])
        # A repeat's record still names its batch's document, which stays open while another lead it lists has no
        # record: a sweeper finishing it after the erasure would apply the repeat's outbox again (its inquiry with
        # the contact after ContactErased, its keys naming the erased lead). Detached, as `_scrub` detaches a lead's.
        for repeat_id in repeats:
            record = records.get(repeat_id)
            if record is not None and record.state is None and record.outbox.batch is not None:
                detached = replace(record, version=record.version + 1, outbox=Outbox())
                await self.records.compare_and_set(detached, expected_version=record.version)

    async def _scrub(self, lead_id: str, command: EraseContact) -> None:
        """One lead's state without its contact, by compare-and-set like a claim. Its batch's document
        was finished by `_publish_pending`, before the keys were forgotten: not again here, as that would
        register them again (a document is kept while another lead it lists has no record)."""

        def check(record: RoutingRecord | None) -> bool:
            # Moved to another office meanwhile: it is erased by a request there.
            return record is not None and record.is_lead and record.account_id == command.account_id

        async def decide(record: RoutingRecord, state: LeadState) -> _Write | None:
            if record.outbox:
                # Events decided before the erasure go out first: ContactErased follows every event
                # that still carries the contact, so every consumer's copy of it is erased.
                await self.flush([record])
                return AGAIN
            scrubbed = without_contact(state)
            if scrubbed == state:
                return None  # erased before (an earlier request)
            version = record.version + 1
            # The scrubbed record no longer names a batch's document (its events went out above), nor keeps the
            # digest of the lead it was made from (of the person's data).
            outbox = replace(record.outbox, batch=None)
            scrubbed = scrubbed.evolve(version=version)
            return _Write(replace(record, version=version, state=scrubbed, outbox=outbox, received=None))

        await self._compare_and_set(lead_id, command.event_id, "erase", check, decide, first_events=False)

    async def _relay_invitation(self, command: InviteRealtor) -> None:
        """T1: one RealtorInvited for the notifier to email, keyed by the account; same id on a redelivery."""
        await self._account(command.account_id)  # an unknown account is poison
        event = RealtorInvited.create(
            account_id=command.account_id,
            event_id=derived_event_id(command.event_id, "realtor-invited"),
            correlation_id=command.correlation_id,
            occurred_at=command.occurred_at,
            payload=RealtorInvitedPayload(**command.payload.model_dump()),
        )
        await self.publish(command.account_id, event.model_dump_json().encode())
        self.metrics.events_published.inc()

    async def _relay_team_member(self, command: TransferTeamMember) -> None:
        """T2: one TeamMemberTransferred for the target office, keyed by it; same id on a redelivery."""
        source = await self._account(command.account_id)
        target = await self._account(command.payload.to_account_id)
        emit = team_member_transferred(
            source,
            target,
            transfer_id=command.event_id,
            agent_id=command.payload.agent_id,
            agent_name=command.payload.agent_name,
            by_user_id=command.payload.by_user_id,
        )
        event = emit.kind.create(
            account_id=target.account_id,
            event_id=derived_event_id(command.event_id, "team-member"),
            correlation_id=command.correlation_id,
            occurred_at=command.occurred_at,
            payload=emit.payload,
        )
        await self.publish(target.account_id, event.model_dump_json().encode())
        self.metrics.events_published.inc()
        self.metrics.transfers.labels("team_member").inc()

    # --- queries ------------------------------------------------------------------------------

    async def dry_run(
        self, account_id: str, lead: LeadSummary | str, rules: RuleSet | None = None
    ) -> tuple[Outcome, RoutingDecision]:
        """How a lead (or a past lead, by id) would be routed now, by the account's rules or by `rules` (a
        draft), from where its rotations stand: changing nothing (issue 15, item 7)."""
        account = await self._account(account_id, fresh=True)
        if rules is not None:
            if refused := rules.refusals({agent.agent_id for agent in account.roster}):
                raise RuleSetRefusedError(refused)
            account = replace(account, rules=rules, rules_unreadable=False)
        lead_id = str(uuid.uuid4())
        if isinstance(lead, str):
            record = await self.records.get(lead)
            if record is None or record.account_id != account_id or record.state is None:
                raise RoutingRejected(f"no lead {lead!r} in account {account_id!r}")
            lead_id, lead = lead, record.state.summary
        now = self.clock()
        new = NewLead(lead_id, account_id, lead)
        choice = rule_for(new, account, now)
        turn = await self._turn(account, lead.source.name, rule_id_of(choice, account), {})
        keys = contact_keys(account_id, lead.contact.email, lead.contact.phone)
        known, holders, _ = await self._known_contacts(keys)  # as routing reads them: an unreadable lead is unknown
        existing = next((lead_of for lead_of in known.values() if lead_of != lead_id), None)
        context = RoutingContext(
            existing=None if existing is None else ExistingContact(existing, holders.get(existing)),
            rotation=turn.cursor,
            counts=turn.counts,
            usage=await self._usage(account, now, {}, deciding=lead_id),
            choice=choice,
        )
        outcome = route_new_lead(new, account, context, now)
        decision = outcome.decision() or Why(now).decision(outcome.explanation)  # R1: logged on its lead
        return outcome, decision

    async def next_up_by_rule(self, account_id: str, rule_id: str, source_name: str) -> tuple[Pool, list[str]]:
        """Who the next lead of routing rule `rule_id` (from `source_name`) goes to now, and the rule's pool
        (issue 15, item 7: "who is next" per rule)."""
        account = await self._account(account_id, fresh=True)
        if rule_id != DEFAULT_RULE_ID and account.rules.find(rule_id) is None:
            raise RoutingRejected(f"no routing rule {rule_id!r} in account {account_id!r}")
        own = None if follows_source(account, rule_id) else rule_id
        now = self.clock()
        gate = Gate(now, account.holidays, await self._usage(account, now, {}), account.time_zone)
        turn = await self._turn(account, source_name, own, {})
        pool = pool_of(account, source_name, own, gate)
        picked, _, _ = pool.take(turn.cursor, turn.counts, frozenset())
        return pool, picked

    async def routing_of(self, account_id: str, lead_id: str) -> tuple[RoutingDecision, ...]:
        """A lead's latest routing decisions, oldest first ("why this agent", issue 15); unknown or
        another account's lead: RoutingRejected."""
        record = await self.records.get(lead_id)
        if record is None or record.account_id != account_id or not record.is_lead:
            raise RoutingRejected(f"no lead {lead_id!r} in account {account_id!r}")
        return readable_decisions(record.decisions)

    async def can_take(self, account_id: str, agent_id: str) -> str | None:
        """Why the agent could not claim a pond lead now, or None: the check `on_activity` gives a claim from a
        pond (`_cannot_take`, caps included), without a lead (crm-api's Ponds list asks it, issue 15)."""
        account = await self._account(account_id, fresh=True)
        agent = account.agent(agent_id)
        if agent is None or not agent.active:  # on_activity refuses their claims (`can_claim`)
            return NOT_ACTIVE
        return await self._refuses(agent, account, self.clock())

    async def next_up(self, account_id: str, source_name: str) -> NextUp:
        """ClientBAY's "who is next" for a source (its account's live settings and rotation)."""
        account = await self._account(account_id, fresh=True)
        now = self.clock()
        # paused, away, at a cap...
        gate = Gate(now, account.holidays, await self._usage(account, now, {}), account.time_zone)
        return next_up(account, source_name, await self.rotations.get(source_key(account_id, source_name)), gate)

    # --- durable timers ----------------------------------------------------------------------

    async def sweep_once(self) -> int:
        """Fire the most overdue deadlines, a batch at a time (I3); returns how many were due."""
        now = self.clock()
        due = await self.records.due(to_ms(now) or 0, self.sweep_batch)
        self.metrics.sweeps.inc()
        oldest = from_ms(due[0].next_deadline_ms) if due else None
        self.metrics.overdue.set((now - oldest).total_seconds() if oldest else 0.0)
        if not due:
            return 0
        # First events a crash left in their batch's document go out before the expiries (decision 0068).
        await self._finish_batches(record.outbox.batch for record in due)
        cursors: dict[str, int] = {}
        read: dict[str, int] = {}
        usage: dict[str, CountedLeads] = {}
        changes: list[tuple[RoutingRecord, RoutingRecord]] = []  # (as read, as decided)
        for record in due:
            try:
                changes.append((record, await self._fired(record, now, cursors, usage, read)))
            except Exception as exc:
                if is_transient(exc):
                    raise  # an outage: the whole pass again, later
                # This record alone (its account unknown or unreadable, a fault): the others' deadlines still
                # fire, and it is looked at again later instead of heading every pass (decision 0077).
                await self._postpone(record, now, exc)
        decided, by = changes, uuid.uuid4().hex
        changes, contended = await self._reserve_fired(changes, read, by)
        stored, deferred = await self._store_fired(changes)
        if contended:  # another decider took a turn or slot these were decided on: decided again at once
            self.metrics.cas_conflicts.labels("turns").inc()
        reserved = {new.lead_id for _, new in changes}  # not those of contended accounts: nothing was taken for them
        await self._give_back([(old, new) for old, new in decided if new.lead_id in reserved], stored, read, by)
        self.metrics.expiries.inc(len(stored))
        self.metrics.cas_conflicts.labels("sweeper").inc(len(changes) - len(stored) - deferred)  # a claim won
        deferred += contended
        self._deferred_passes = self._deferred_passes + 1 if deferred else 0
        if deferred:  # still due: the sweeper goes round again at once, then after a pause growing each time
            self.on_deadline((to_ms(now) or 0) + deferred_pause_ms(self._deferred_passes))
        await self.flush(stored)
        return len(due)

    async def _reserve_fired(
        self, changes: list[tuple[RoutingRecord, RoutingRecord]], read: Mapping[str, int], by: str
    ) -> tuple[list[tuple[RoutingRecord, RoutingRecord]], int]:
        """The pass's changes with the turns and slots they took reserved (`_reserve`); when another decider took one
        meanwhile, those that take turns are left out (still due: decided again at once) and counted."""
        taking = [(old, new) for old, new in changes if _turns(old, new)]
        if not taking:
            return changes, 0
        # One account's contention holds back its own changes only; the others' turns are taken in the same command.
        reserved, contended = await self._reserve_by_account(
            [(old.state, new) for old, new in taking], read, by=by, whole=False
        )
        by_lead = {record.lead_id: record for record in reserved}
        kept = [(old, by_lead.get(new.lead_id, new)) for old, new in changes if new.account_id not in contended
                or not _turns(old, new)]  # fmt: skip
        return kept, len(changes) - len(kept)

    async def _give_back(
        self,
        decided: list[tuple[RoutingRecord, RoutingRecord]],
        stored: list[RoutingRecord],
        read: Mapping[str, int],
        by: str,
    ) -> None:
        """The turns and slots the decider `by` reserved for a pass's changes that were not stored (a claim won one,
        those after it sharing its turns were deferred): each cursor and count back to where the stored ones left it,
        unless another decider moved it since; its pending holds of those leads dropped."""
        kept = {record.lead_id for record in stored}
        lost = [new for old, new in decided if _turns(old, new) and new.lead_id not in kept]
        if not lost:
            return
        reserved = _moves([new for old, new in decided if _turns(old, new)], read, {})
        reached = _moves([new for old, new in decided if new.lead_id in kept], read, {})
        back = {key: (take.to, reached[key].to if key in reached else read[key]) for key, take in reserved.items()}
        await self.rotations.take({key: Take(to, back, back) for key, (to, back) in back.items() if back < to})
        await self._put_back_holds(by, lost)

    async def _store_fired(self, changes: list[tuple[RoutingRecord, RoutingRecord]]) -> tuple[list[RoutingRecord], int]:
        """Store a pass's decided records by compare-and-set; returns those stored and how many were deferred.

        Records that took a turn of the pass's shared state (a rotation's cursor or counts, an agent's cap taken
        or freed) are stored in the order they were decided: once one loses (a claim or a replica changed its
        lead meanwhile), the later ones sharing its turns are not stored, as they were decided after a turn that
        did not happen; they stay due and are decided again. The others are stored concurrently."""
        limit = asyncio.Semaphore(self.sweep_concurrency)

        async def store(old: RoutingRecord, new: RoutingRecord) -> RoutingRecord | None:
            async with limit:
                return new if await self.records.compare_and_set(new, expected_version=old.version) else None

        turns = [_turns(old, new) for old, new in changes]

        async def in_turn() -> tuple[list[RoutingRecord], int]:
            stored, lost, deferred = [], set[str](), 0
            for (old, new), taken in ((c, t) for c, t in zip(changes, turns, strict=True) if t):
                if taken & lost:
                    lost |= taken
                    deferred += 1
                elif await store(old, new) is not None:
                    stored.append(new)
                else:
                    lost |= taken
            return stored, deferred

        alone = asyncio.gather(*(store(*c) for c, t in zip(changes, turns, strict=True) if not t))
        (stored, deferred), others = await asyncio.gather(in_turn(), alone)
        return stored + [record for record in others if record is not None], deferred

    async def _fired(
        self,
        record: RoutingRecord,
        now: datetime,
        cursors: dict[str, int],
        usage: dict[str, CountedLeads],
        read: dict[str, int] | None = None,
    ) -> RoutingRecord:
        """The due record's next version: its offers expired, the lead offered on or fallen back (R9, R10)."""
        state = record.state
        assert state is not None  # noqa: S101 (only leads have deadlines)
        account = await self._account(state.account_id)
        turn = await self._turn(account, state.source_name, state.rule_id, cursors, read=read)
        known = await self._usage(account, now, usage, deciding=record.lead_id)
        outcome = on_deadline(state, account, Standing(turn.cursor, turn.counts, known), now)
        moved: dict[str, int] = {}
        effects = turn.effects(outcome, moved)
        new = self._next_record(record, outcome, source_id=uuid.UUID(state.lead_id), now=now, effects=effects)
        # Only a record decided counts for the pass's later deadlines: its rotation's turn, the caps it took.
        cursors.update(moved)
        _recount(state, outcome, usage)
        if state.next_deadline is not None:
            self.metrics.timer_lateness.observe(max(0.0, (now - state.next_deadline).total_seconds()))
        return new

    async def _postpone(self, record: RoutingRecord, now: datetime, exc: Exception) -> None:
        """A deadline that cannot fire now is looked at again in SWEEP_RETRY_SECONDS (decision 0077)."""
        until_ms = (to_ms(now) or 0) + SWEEP_RETRY_SECONDS * 1000
        await self.records.postpone(record.lead_id, expected_version=record.version, until_ms=until_ms)
        self.metrics.deadline_failures.inc()
        log.error(
            "sweeper could not fire a deadline: %s; looking again in %d s",
            type(exc).__name__,
            SWEEP_RETRY_SECONDS,
            extra={"lead_id": record.lead_id},
        )

    async def republish_stale(self, older_than_ms: int = 5_000, limit: int = 500) -> int:
        """Flush outboxes a crash left behind (the inputs that made them were already committed), and
        outbox documents no redelivery finished (decision 0068)."""
        stale = await self.records.unflushed((to_ms(self.clock()) or 0) - older_than_ms, limit)
        await self.flush(stale)
        cutoff_ms = self._wall_ms() - STALE_BATCH_SECONDS * 1000  # wall clock: documents are stamped so
        stale_batches = await self.records.stale_batches(cutoff_ms, limit)
        batches = [b for b in stale_batches if b.rpartition("/")[0] not in self._batches_in_flight]
        await self._finish_batches(batches)
        return len(stale) + len(batches)

    async def forget_deleted_rules(self) -> int:
        """Remove the cursors and counts (`router_rotations`) of routing rules the account's rule set as it is now
        (read fresh) no longer has; returns how many. Kept: the default rule's, the sources', those of every rule
        still there, and all of an account unknown or whose stored rule set cannot be read (it may read again). A
        replica deciding on a snapshot cached before the save may write one again: the next pass removes it."""
        by_account: dict[str, list[tuple[str, str]]] = {}
        for key in await self.rotations.rule_keys():
            account_id, _, rest = key.partition(":rule:")
            by_account.setdefault(account_id, []).append((key, rest.partition("@")[0]))
        gone: list[str] = []
        for account_id, keys in by_account.items():
            account = await self.accounts.get(account_id, fresh=True)  # a rule saved since the cache read stays
            if account is not None and not account.rules_unreadable:
                gone += [key for key, rule_id in keys if _deleted(account, rule_id)]
        await self.rotations.drop(gone)
        return len(gone)

    # --- outbox ----------------------------------------------------------------------------------

    async def flush(self, records: list[RoutingRecord], *, clear: bool = True) -> None:
        """Apply the records' pending side effects and publish their events, then clear them (`clear`: in
        the records; outboxes kept in an outbox document are dropped with it by the caller)."""
        for record in records:
            self.on_deadline(record.next_deadline_ms)
        records = [r for r in records if r.outbox]
        if not records:
            return
        effects = _Effects.of(records)

        async def apply_effects() -> None:
            await self.rotations.advance_many(effects.positions)
            await self._hold(records)
            await self.contacts.register(effects.lead_by_key)
            if effects.lead_by_key:
                await self._forget_if_erased(effects.lead_by_key)
            for lead_id, keys in effects.forget.items():
                await self.contacts.forget(lead_id, keys)

        async def publish_in_order(record: RoutingRecord) -> None:
            # Keys are the events' accounts: the record's, unless a transfer stored others.
            keys: Iterable[str] = record.outbox.keys or repeat(record.account_id)
            with tracing.continued(record.outbox.trace):  # the lead's trace, when its record had one
                for key, raw in zip(keys, record.outbox.events, strict=False):
                    await self.publish(key, raw.encode())

        # Effects and events are independent (both idempotent); leads are independent of
        # each other; one lead's events keep their order.
        await asyncio.gather(apply_effects(), *(publish_in_order(record) for record in records))
        self.metrics.events_published.inc(sum(len(record.outbox.events) for record in records))
        if clear:
            await self.records.mark_flushed(records)

    async def _forget_if_erased(self, lead_by_key: dict[str, str]) -> None:
        """Forget the keys just registered for a lead keys may not name (`keys_may_name`: one an erasure scrubbed, or
        erased before it was stored, meanwhile; decision 0050): a writer or a sweeper applies an outbox it read before
        the erasure, whose last forget may already have run. Read after the register: either this read sees the
        erasure, or the erasure's last forget (after its scrub) follows the register. One read per such flush."""
        leads = await self.records.readable_many(sorted(set(lead_by_key.values())), read="contacts")
        if erased := sorted(i for i, r in leads.items() if not r.keys_may_name):
            await self.contacts.forget_leads(erased)

    def _outbox(
        self,
        outcome: Outcome,
        *,
        source_id: uuid.UUID,
        correlation_id: uuid.UUID,
        account_id: str,
        now: datetime,
        effects: Effects,
        purpose: str = "",
        trace: str | None = None,
        version: tuple[str, int] | None = None,
    ) -> Outbox:
        """The outbox of `outcome`'s events. `version`: the lead whose record the change writes and the record's
        version after it, stamped on that lead's events (`router_version`, decision 0093)."""
        events = tuple(
            emit.kind.create(
                account_id=account_id,
                event_id=derived_event_id(source_id, f"{purpose}{index}"),
                correlation_id=correlation_id,
                occurred_at=now,
                payload=_stamped(emit.payload, version),
            ).model_dump_json()
            for index, emit in enumerate(outcome.events)
        )
        for emit in outcome.events:
            self.metrics.events_decided.labels(emit.kind.__name__).inc()
        since = to_ms(now) if events or effects else None
        return Outbox(events=events, effects=effects, since_ms=since, trace=trace or None)

    def _next_record(
        self,
        record: RoutingRecord,
        outcome: Outcome,
        *,
        source_id: uuid.UUID,
        now: datetime,
        effects: Effects | None = None,
        event_account_id: str | None = None,
    ) -> RoutingRecord:
        """The record after `outcome`: state, version + 1, and an outbox that keeps any unflushed events.

        The events belong to `event_account_id` (envelope and Kafka key), by default the
        new state's account; a transfer's belong to the office the lead left.
        """
        state = outcome.state
        assert state is not None  # noqa: S101 (transitions of an existing lead keep a state)
        if counted(record.state) != counted(state):
            effects = replace(effects or Effects(), capacity=tuple(sorted(counted(state))))
        version = record.version + 1
        events_account = event_account_id or state.account_id
        pending = self._outbox(
            outcome,
            source_id=source_id,
            correlation_id=uuid.UUID(record.correlation_id),
            account_id=events_account,
            now=now,
            effects=effects or Effects(),
            purpose=f"v{version}:",
            version=(state.lead_id, version),
        )
        # Events of an earlier change not yet flushed go out first (same ids: consumers drop copies).
        carried = record.outbox
        keys = (*(carried.keys or (record.account_id,) * len(carried.events)), *(events_account,) * len(pending.events))
        outbox = Outbox(
            events=(*carried.events, *pending.events),
            keys=keys if any(key != state.account_id for key in keys) else None,  # only if not all the record's
            effects=carried.effects.then(pending.effects),
        )
        if outbox:
            outbox = replace(outbox, since_ms=carried.since_ms or to_ms(now))
        return RoutingRecord(
            state.lead_id, state.account_id, version, state.evolve(version=version), record.correlation_id,
            inputs=record.inputs, outbox=outbox, decisions=record.decisions,
        ).deciding(outcome.decision())  # fmt: skip

    async def _account(self, account_id: str, *, fresh: bool = False) -> AccountSnapshot:
        account = await self.accounts.get(account_id, fresh=fresh)
        if account is None:
            raise RoutingRejected(f"unknown account {account_id!r}")
        return account

    async def _cannot_take(
        self, state: LeadState, agent: Agent | None, account: AccountSnapshot, now: datetime, *, pond_only: bool = True
    ) -> str | None:
        """Why `agent` cannot take this lead now (paused, away, off hours, at a cap), or None: asked of a
        claim from a pond (its offers are not counted against caps) and of a missed offer asked back."""
        if agent is None or not agent.active:
            return None if pond_only else NOT_ACTIVE
        if pond_only and state.pond is None:
            return None
        refusal = await self._refuses(agent, account, now, deciding=state.lead_id)
        if refusal is None:
            return None
        return f"{agent.agent_id} cannot take it from the pond: {refusal}" if pond_only else refusal

    async def _refuses(
        self, agent: Agent, account: AccountSnapshot, now: datetime, *, deciding: str | None = None
    ) -> str | None:
        """Why the active `agent` cannot take a lead (`deciding`, if one) now (paused, away, off hours, on a holiday,
        at a cap)."""
        usage = await self._usage(account, now, {}, deciding=deciding)
        return Gate(now, account.holidays, usage, account.time_zone).refuses(agent)

    async def _usage(
        self,
        account: AccountSnapshot,
        now: datetime,
        known: dict[str, CountedLeads],
        *,
        deciding: str | None = None,
    ) -> dict[str, Usage] | None:
        """The counted leads of the account's capped agents this day, week and month (read once per
        batch into `known`, with the leads they are: `_recount`), pending holds included; as the decision of the lead
        `deciding` reads them, without that lead (`CountedLeads.seen_by`). None when nobody has a cap (nothing is
        counted or read then)."""
        if self.capacity is None or not account.counts_leads:
            return None
        if account.account_id not in known:
            capped = [a.agent_id for a in account.roster if a.availability is not None and a.availability.caps]
            since = to_ms(period_start(now, account.time_zone)) or 0
            places = await self.capacity.places(account.account_id, capped, since)
            known[account.account_id] = CountedLeads.of(places, now, account.time_zone)
        counted = known[account.account_id]
        return counted.usage if deciding is None else counted.seen_by(deciding)

    async def _hold(self, records: list[RoutingRecord]) -> None:
        """Who each changed lead counts against now, for accounts where somebody has a cap; then the pending holds
        its change was reserved with are dropped (after: the lead counts all along)."""
        if self.capacity is None:
            return
        counted = [(record, agents) for record in records if (agents := record.outbox.effects.capacity) is not None]
        accounts = await self.accounts.get_many(sorted({record.account_id for record, _ in counted}))
        # A lead counting against nobody now is written in any account: one moved to an office without caps stops
        # counting against the agent it left (helper 162).
        holds = [
            (record.lead_id, record.account_id, agents, record.version)
            for record, agents in counted
            if not agents or ((account := accounts[record.account_id]) is not None and account.counts_leads)
        ]
        await self.capacity.hold_many(holds, to_ms(self.clock()) or 0)  # one read and write for them all
        leads_by: dict[str, list[str]] = {}  # each decider's pending holds of these leads (one, but after a crash)
        for record in records:
            for by in record.outbox.effects.pending:
                leads_by.setdefault(by, []).append(record.lead_id)
        for by, lead_ids in leads_by.items():
            await self.capacity.unpend([by], lead_ids)


def _deleted(account: AccountSnapshot, rule_id: str) -> bool:
    """Whether a `<account>:rule:<rule_id>` cursor is of a rule the account's rule set no longer has (a source's
    key never looks so: `source_key`)."""
    if rule_id == DEFAULT_RULE_ID:
        return False
    return account.rules.find(rule_id) is None


def _stamped(payload: Contract, version: tuple[str, int] | None) -> Contract:
    """`payload` with the record's version when it is a lead event's about the lead whose record the change
    writes (`router_version`, decision 0093); any other (an R1 repeat's note on the lead it merged into) as is."""
    if version is None or not isinstance(payload, LeadPayload) or str(getattr(payload, "lead_id", "")) != version[0]:
        return payload
    return payload.model_copy(update={"router_version": version[1]})


def _new_lead(lead_id: str, event: LeadReceived) -> NewLead:
    payload = event.payload
    summary = LeadSummary(
        contact=payload.contact, source=payload.source, message=payload.message, criteria=payload.criteria
    )
    return NewLead(lead_id, event.account_id, summary)


def _moves(records: list[RoutingRecord], read: Mapping[str, int], expected: Mapping[str, int]) -> dict[str, Take]:
    """Each rotation cursor and count the records moved: from where their decisions began (`read`; where it stood,
    `expected`, when that differs) to the furthest they took it, with each lead that moved it and where."""
    leads: dict[str, list[tuple[str, int]]] = {}
    for record in records:
        effects = record.outbox.effects
        for key, position in (*([effects.rotation] if effects.rotation else ()), *effects.counts):
            leads.setdefault(key, []).append((record.lead_id, position))
    return {
        key: Take(expected.get(key, read[key]), to, read[key], tuple(moved))
        for key, moved in leads.items()
        if key in read and (to := max(at for _, at in moved)) > read[key]
    }


def _begin(taken: Taken, ours: set[str] | frozenset[str], stored: frozenset[str]) -> int:
    """Where a batch's decisions begin on a cursor or count: where it stands, unless its last take was by leads all
    in this batch (a crash cut their batch before its records were all stored; its offsets were not committed): then
    where that take began, or where the last of them stored left it. The rotation goes on as without the crash
    (decision 0022), the turns it took then not lost."""
    if taken.start is None or not taken.leads or not {lead for lead, _ in taken.leads} <= ours:
        return taken.position
    return max([taken.start, *(at for lead, at in taken.leads if lead in stored)])


def _taken(record: RoutingRecord, moves: Mapping[str, Take], *, pending: tuple[str, ...]) -> RoutingRecord:
    """The record without the effects `_reserve` applied (the moves it took), with the deciders whose pending holds
    `flush` drops once its count is held for good."""
    effects = record.outbox.effects
    rotation = effects.rotation
    if rotation is not None and rotation[0] in moves and moves[rotation[0]].to >= rotation[1]:
        rotation = None
    counts = tuple((key, n) for key, n in effects.counts if key not in moves or moves[key].to < n)
    if rotation == effects.rotation and counts == effects.counts and not pending:
        return record  # nothing taken, nothing pending (a lead in no rotation): no `replace`, dear per record
    left = replace(effects, rotation=rotation, counts=counts, pending=(*effects.pending, *pending))
    return replace(record, outbox=replace(record.outbox, effects=left))


def _key_owners(records: list[RoutingRecord]) -> dict[str, str]:
    """The account of each rotation cursor and count the records moved."""
    owners: dict[str, str] = {}
    for record in records:
        effects = record.outbox.effects
        for key, _ in (*([effects.rotation] if effects.rotation else ()), *effects.counts):
            owners[key] = record.account_id
    return owners


def deferred_pause_ms(passes: int) -> int:
    """How long the sweeper waits before the next pass after `passes` in a row deferred their changes: none after the
    first (a rival's change is stored in milliseconds), then 50 ms doubling up to DEFERRED_PAUSE_MAX_MS."""
    return 0 if passes <= 1 else min(DEFERRED_PAUSE_MAX_MS, 50 * 2 ** min(passes - 2, 16))


def _started(before: LeadState | None, record: RoutingRecord) -> frozenset[str]:
    """The agents a change started counting its lead against."""
    return counted(record.state) - counted(before)


def _moved_counts(
    changes: Sequence[tuple[LeadState | None, RoutingRecord]],
) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """The leads the changes started counting against each agent, and those they stopped counting against it."""
    started: dict[str, set[str]] = {}
    stopped: dict[str, set[str]] = {}
    for before, record in changes:
        for agent_id in _started(before, record):
            started.setdefault(agent_id, set()).add(record.lead_id)
        for agent_id in counted(before) - counted(record.state):
            stopped.setdefault(agent_id, set()).add(record.lead_id)
    return started, stopped


def _line(places: Mapping[str, Place], started: set[str], stopped: set[str], pending: Place) -> dict[str, Place]:
    """An agent's line as the changes see it: a lead they start counting stands at their own pending hold, made now
    (another's hold of it, a crash's leftover of yesterday, would count it in yesterday's period: helper 163); a lead
    counted for good that they stop counting is out of it (its slot is theirs to take: a pass stores its changes in
    the order they were decided and stores none that took a slot a lost change was to free, `_store_fired`; helper
    163)."""
    line = {lead: place for lead, place in places.items() if not (lead in stopped and place.by is None)}
    for lead in started:
        if line.get(lead, pending).by is not None:
            line[lead] = pending
    return line


def _fresh(
    events: list[LeadReceived], stored: Mapping[str, RoutingRecord]
) -> tuple[dict[str, tuple[int, LeadReceived]], BatchRejections, dict[str, str]]:
    """The batch's leads to decide, by id (a resend inside the batch counts once), the deliveries refused (one
    whose id a stored record or an earlier one of the batch has with another lead in it) and each lead's
    `received_digest`. That id was reused (a partner's event id sent again for another person after intake's window
    forgot it, helper 147): taken for a redelivery, the lead would be dropped without a word; it is dead-lettered with
    the reason (partner contract)."""
    fresh: dict[str, tuple[int, LeadReceived]] = {}
    made_of = {lead_id: record.received for lead_id, record in stored.items()}
    rejections: BatchRejections = []
    digests: dict[str, str] = {}
    for index, event in enumerate(events):
        lead_id, digest = str(event.event_id), received_digest(event.payload.model_dump_json())
        before = made_of.setdefault(lead_id, digest)
        if before is not None and before != digest:
            rejections.append((index, RoutingRejected(f"event id {lead_id} was used before for another lead")))
        elif lead_id not in stored:
            fresh.setdefault(lead_id, (index, event))
            digests.setdefault(lead_id, digest)
    return fresh, rejections, digests


def _contact_keys(event: LeadReceived) -> list[str]:
    return contact_keys(event.account_id, event.payload.contact.email, event.payload.contact.phone)


def _recount(before: LeadState | None, outcome: Outcome, usage: dict[str, CountedLeads]) -> tuple[str, ...] | None:
    """Who the lead counts against after `outcome`, when that changed (None: unchanged); the batch's
    known usage follows, so the batch's later decisions see the caps it filled and the slots it freed (a lead
    that stops counting frees a slot only of the periods it was counted in: `CountedLeads.credit`)."""
    after = counted(outcome.state)
    if after == counted(before):
        return None
    state = outcome.state
    if state is not None and (known := usage.get(state.account_id)) is not None:
        for agent in after - counted(before):
            known.count(agent, state.lead_id)
        for agent in counted(before) - after:
            known.credit(agent, state.lead_id)
    return tuple(sorted(after))


def _rule(outcome: Outcome) -> str:
    """The rule that decided, for metrics ("R5", "R6", "Rule"...): the first one the explanation names."""
    return step_of(outcome.explanation)
