"""A lead's routing record: its state and what is still to be done about its last change.

Every change of a lead is stored as a new version of its record (compare-and-set on `version`,
I2) together with its outbox: the events to publish and the side effects to apply (rotation
cursors, contact keys). `RouterService.flush` publishes and applies them after the record is
stored, then clears them; a crash in between leaves them for a redelivery or `republish_stale`
(decision 0022). A batch of new leads keeps its outboxes in one document beside the records instead,
dropped once published (decision 0068). `adapters/codec.py` maps a record to its MongoDB document and back.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

from leadflow_router.domain.model import LeadState
from leadflow_shared.clock import epoch_ms_ceil
from leadflow_shared.routing_info import RoutingDecision

DECISIONS_KEPT = 5


@dataclass(frozen=True, slots=True)
class Effects:
    """Side effects a change leaves for `flush`: all idempotent, applied after the record is stored."""

    rotation: tuple[str, int] | None = None  # a rotation's cursor moves to this position
    counts: tuple[tuple[str, int], ...] = ()  # a balanced rotation's lead counts (key, count): they only grow
    contacts: tuple[str, ...] = ()  # contact keys to register for the lead (R1) ...
    contacts_lead: str | None = None  # ... or for this lead instead (a repeat merged into it)
    forget_contacts: tuple[str, ...] = ()  # contact keys to drop where they point at the lead (T2)
    capacity: tuple[str, ...] | None = None  # the agents the lead now counts against (caps); None: unchanged
    # The deciders whose pending holds (`CapacityLog.pend`) kept the lead's count while the change was being stored:
    # dropped by `flush` once the count is held for good (decision 0061, amended in session 33).
    pending: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.rotation or self.counts or self.contacts or self.forget_contacts or self.capacity is not None
                    or self.pending)  # fmt: skip

    def then(self, later: Effects) -> Effects:
        """These effects and `later`'s, the later ones winning where both set the same thing."""
        return Effects(
            rotation=later.rotation or self.rotation,
            counts=later.counts or self.counts,
            contacts=later.contacts or self.contacts,
            contacts_lead=later.contacts_lead or self.contacts_lead,
            forget_contacts=later.forget_contacts or self.forget_contacts,
            capacity=self.capacity if later.capacity is None else later.capacity,
            pending=tuple(dict.fromkeys((*self.pending, *later.pending))),
        )


@dataclass(frozen=True, slots=True)
class Take:
    """One decider's move of a rotation cursor or balanced count (`RotationCursors.take`): from where it stood
    (`expected`) to `to`, made of decisions begun at `start`; `leads`: each lead that moved it, with where it left it
    (a redelivery of the same leads after a crash begins again from there: `RouterService._read_turns`)."""

    expected: int
    to: int
    start: int
    leads: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Taken:
    """A rotation cursor or count as read, with its last take (`Take`: its start and leads; none before)."""

    position: int
    start: int | None = None
    leads: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Outbox:
    """Serialized events to publish in order, each with its Kafka key, and the effects to apply."""

    events: tuple[str, ...] = ()
    keys: tuple[str, ...] | None = None  # each event's key, only when one is not the record's account
    effects: Effects = field(default_factory=Effects)
    since_ms: int | None = None  # when the oldest of them was stored (republish_stale looks for old ones)
    trace: str | None = None  # the W3C traceparent to publish them in (tracing)
    # A new lead's first outbox waits in its batch's outbox document (`router_outboxes`, decision 0068), not in
    # the record: this names that document. While it exists the events may be unpublished; the record's own
    # outbox is empty either way.
    batch: str | None = None

    def __bool__(self) -> bool:
        return bool(self.events or self.effects)


@dataclass(frozen=True, slots=True)
class OutboxDocument:
    """A batch of new leads' outboxes, kept beside their records until published (decision 0068)."""

    since_ms: int  # when it was written, wall-clock epoch ms
    outboxes: dict[str, Outbox]  # by lead id


@dataclass(frozen=True, slots=True)
class RoutingRecord:
    """One lead's stored routing record. `state` is None for a repeat merged into another lead (R1)."""

    lead_id: str
    account_id: str
    version: int
    state: LeadState | None
    correlation_id: str
    inputs: tuple[str, ...] = ()  # ids of the inputs applied lately (activities, commands): redeliveries
    outbox: Outbox = field(default_factory=Outbox)
    # Its latest routing decisions, oldest first ("why this agent"), as stored: read only when asked for. Each is its
    # JSON text (a document in records stored before decision 0096): the database stores one string, not the
    # decision's every list and field, which for a big office's rotation named hundreds of agents (decision 0096).
    decisions: tuple[str | dict[str, Any], ...] = ()
    # A digest of the LeadReceived it was made from (`received_digest`): a delivery under its id with another lead in
    # it is an event id reused (a partner's, after intake forgot it), not a redelivery. None: erased, or stored before.
    received: str | None = None

    @property
    def is_lead(self) -> bool:
        return self.state is not None

    @property
    def keys_may_name(self) -> bool:
        """Whether a contact key may name this record (R1): a lead not erased. Not an erased lead, nor a record with
        no state (a merged repeat, which no key names, or the erased placeholder of a lead erased before it was
        stored, decision 0068): a key naming one is forgotten, as its erasure forgets the lead's keys."""
        return self.state is not None and not self.state.erased

    @property
    def next_deadline_ms(self) -> int | None:
        deadline = self.state.next_deadline if self.state is not None else None
        return None if deadline is None else epoch_ms_ceil(deadline)  # as stored: rounded up

    def deciding(self, decision: RoutingDecision | None) -> RoutingRecord:
        """The record with `decision` as its latest routing decision (the last DECISIONS_KEPT are kept)."""
        if decision is None:
            return self
        kept = self.decisions[-(DECISIONS_KEPT - 1) :]
        return replace(self, decisions=(*kept, decision.model_dump_json(exclude_defaults=True)))

    def remembering(self, input_id: str, recent: int) -> RoutingRecord:
        """The record with `input_id` among the last `recent` inputs applied."""
        return replace(self, inputs=(*self.inputs[-(recent - 1) :], input_id))


def received_digest(payload_json: str) -> str:
    """What a record keeps of the lead it was made from (`RoutingRecord.received`): a hash of its LeadReceived's payload
    as JSON, which a redelivery, or intake's resend of the same submission, repeats exactly."""
    return hashlib.sha256(payload_json.encode()).hexdigest()[:32]
