"""In-memory fakes of the notifier's ports (directory, delivery log, senders, digest, staff, dead letters)
and the helpers its tests share; the integration tests pair some of them with the real MongoDB and SMTP.

Imported by unit and integration tests alike (pyproject puts tests/unit on pytest's sys.path; it holds no tests).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from email.message import EmailMessage
from typing import Any

from leadflow_notifier.adapters.repository import Begin, Claimed
from leadflow_notifier.domain.delivery import Delivery
from leadflow_notifier.domain.digest import DigestBook, DigestItem, DigestWindow, Unlisted
from leadflow_notifier.domain.errors import DeliveryError
from leadflow_notifier.domain.messages import Content, Outgoing, Recipient
from leadflow_notifier.domain.preferences import Channel
from leadflow_notifier.handlers import Sender
from leadflow_shared.events.routing import TeamMemberTransferred, TeamMemberTransferredPayload

# --- who is told ------------------------------------------------------------------------------------


class Directory:
    """Knows the recipients it is given, by agent id, and nobody else."""

    def __init__(self, *recipients: Recipient) -> None:
        self.recipients = {r.agent_id: r for r in recipients}

    async def get(self, agent_id: str) -> Recipient | None:
        return self.recipients.get(agent_id)


class Staff:
    """The team staff of the account "north"; no new-lead subscribers anywhere."""

    def __init__(self, *people: Recipient) -> None:
        self.people = list(people)

    async def team_staff(self, account_id: str) -> list[Recipient]:
        return self.people if account_id == "north" else []

    async def new_lead_subscribers(self, account_id: str) -> list[Recipient]:  # noqa: ARG002
        return []


# --- the delivery log -------------------------------------------------------------------------------


class Log:
    """The delivery log: once per key (a pending key is busy), with the leases held and the records due."""

    def __init__(self) -> None:
        self.status: dict[str, str] = {}
        self.held: set[str] = set()
        self.due: list[Delivery] = []

    async def begin(self, delivery: Delivery, *, now_ms: int) -> Begin:  # noqa: ARG002
        key = delivery.key
        if key in self.status:
            return Begin.DONE if self.status[key] != "pending" else Begin.BUSY
        self.status[key] = "pending"
        self.held.add(key)
        return Begin.SEND

    async def recorded(self, keys: list[str]) -> list[str]:
        return [key for key in keys if key in self.status]

    async def claim_due(self, *, now_ms: int, limit: int) -> Claimed:  # noqa: ARG002
        claimed, self.due = self.due[:limit], self.due[limit:]
        self.held.update(d.key for d in claimed)
        return Claimed(deliveries=claimed)

    async def postpone(self, key: str, *, until_ms: int) -> None:
        self.status[key] = f"pending:until {until_ms}"

    async def sent(self, key: str, *, now_ms: int) -> None:  # noqa: ARG002
        self.status[key] = "sent"

    async def failed(self, key: str, *, reason: str, now_ms: int) -> None:  # noqa: ARG002
        self.status[key] = f"failed:{reason}"

    def release(self, key: str) -> None:
        self.held.discard(key)


class Journal:
    """Deliveries and erasures in the order the notifier made them (the delivery log and the erasure port)."""

    def __init__(self) -> None:
        self.steps: list[str] = []

    async def begin(self, delivery: Delivery, *, now_ms: int) -> Begin:  # noqa: ARG002
        self.steps.append(f"begin {delivery.event_type} {','.join(delivery.lead_ids)}")
        return Begin.SEND

    async def sent(self, key: str, *, now_ms: int) -> None:
        pass

    async def failed(self, key: str, *, reason: str, now_ms: int) -> None:
        pass

    async def postpone(self, key: str, *, until_ms: int) -> None:
        pass

    def release(self, key: str) -> None:
        pass

    async def erase(self, lead_ids: list[str], *, now_ms: int) -> int:  # noqa: ARG002
        self.steps.append(f"erase {','.join(lead_ids)}")
        return 0


class Digest:
    """The digest items filed, and the leads noted unlisted (by which event each was filed); no account has a digest
    due."""

    def __init__(self) -> None:
        self.items: list[DigestItem] = []
        self.noted: dict[str, str | None] = {}

    async def add(self, item: DigestItem) -> None:
        self.items.append(item)

    async def note(self, lead: Unlisted) -> None:
        self.noted.setdefault(lead.key, None)

    async def file_noted(self, item: DigestItem, *, by: str, write: bool = True) -> bool:
        key = Unlisted(item.account_id, item.lead_id).key
        if key not in self.noted or self.noted[key] not in (None, by) or (not write and self.noted[key] is None):
            return False
        if write:
            self.noted[key] = by
            await self.add(item)
        return True

    async def accounts_since(self, since_ms: int) -> list[str]:  # noqa: ARG002
        return []

    async def digests(self, account_id: str, windows: list[DigestWindow]) -> DigestBook:  # noqa: ARG002
        return DigestBook(taken={}, waiting=[])

    async def take(self, account_id: str, window: DigestWindow, items: list[DigestItem]) -> list[DigestItem]:  # noqa: ARG002
        return items


class Forgetting(Digest):
    """The digest items with the erasure ports over them, as `DigestItems` and `LeadErasure` in MongoDB: an
    erasure leaves a marker per lead and deletes the leads' items; an item's key is stored once. `reads`: how
    many times the markers were read."""

    def __init__(self) -> None:
        super().__init__()
        self.markers: set[str] = set()
        self.reads = 0

    async def add(self, item: DigestItem) -> None:
        if all(i.key != item.key for i in self.items):
            self.items.append(item)

    async def erase(self, lead_ids: list[str], *, now_ms: int) -> int:  # noqa: ARG002
        self.markers.update(lead_ids)
        self.items = [i for i in self.items if i.lead_id not in lead_ids]
        return 0

    async def erased(self, lead_ids: list[str]) -> set[str]:
        self.reads += 1
        return self.markers & set(lead_ids)


# --- senders ----------------------------------------------------------------------------------------


class Outbox:
    """Accepts everything: (message id, content) in the order sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    async def send(self, content: Any, *, message_id: str) -> None:
        self.sent.append((message_id, content))


class Recorder:
    """Accepts everything after yielding once (so concurrent notifiers interleave): the message ids."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, content: Any, *, message_id: str) -> None:  # noqa: ARG002 (the port's signature)
        await asyncio.sleep(0)
        self.sent.append(message_id)


class Provider:
    """Fails with the queued errors first, then accepts."""

    def __init__(self, *errors: DeliveryError) -> None:
        self.errors = list(errors)
        self.accepted: list[Any] = []
        self.ids: list[str] = []
        self.attempts = 0

    async def send(self, content: Any, *, message_id: str) -> None:
        self.attempts += 1
        await asyncio.sleep(0)  # a real provider awaits: lets concurrent deliveries interleave
        if self.errors:
            raise self.errors.pop(0)
        self.accepted.append(content)
        self.ids.append(message_id)


class Blocking(Provider):
    """Hangs until released: shows the other channels do not wait for it."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def send(self, content: Any, *, message_id: str) -> None:
        await self.release.wait()
        await super().send(content, message_id=message_id)


class Gate:
    """A sender that holds each send until released: a process that is slow, or about to die."""

    def __init__(self, then: Sender | None = None) -> None:
        self.entered, self.release, self.then = asyncio.Event(), asyncio.Event(), then

    async def send(self, content: Any, *, message_id: str) -> None:
        self.entered.set()
        await self.release.wait()
        if self.then is not None:
            await self.then.send(content, message_id=message_id)


class Stuck:
    """A sender whose every send hangs: the process dies with these sends in flight."""

    def __init__(self) -> None:
        self.started: list[str] = []

    async def send(self, content: Any, *, message_id: str) -> None:  # noqa: ARG002 (the port's signature)
        self.started.append(message_id)
        await asyncio.Event().wait()


# --- dead letters -----------------------------------------------------------------------------------


class DeadLetters:
    """The dead letters published, as (channel, agent id, reason)."""

    def __init__(self) -> None:
        self.letters: list[tuple[str, str, str]] = []

    async def publish(self, raw: bytes, *, account_id: str, channel: str, agent_id: str, error: DeliveryError) -> None:  # noqa: ARG002
        self.letters.append((channel, agent_id, error.reason))

    @property
    def reasons(self) -> list[str]:
        return [reason for _, _, reason in self.letters]


class NoDeadLetters:
    """For tests where nothing may be dead-lettered: a dead letter fails the test."""

    async def publish(
        self,
        raw: bytes,  # noqa: ARG002
        *,
        account_id: str,  # noqa: ARG002
        channel: str,
        agent_id: str,  # noqa: ARG002
        error: DeliveryError,
    ) -> None:
        raise AssertionError(f"unexpected dead letter {channel} {error}")


# --- reading what was sent --------------------------------------------------------------------------


def by_channel(messages: list[Outgoing]) -> dict[Channel, Content]:
    """The messages of a recipient with at most one push device, by channel."""
    found = {m.channel: m.content for m in messages}
    assert len(found) == len(messages), "more than one message on a channel"
    return found


def plain(message: EmailMessage) -> str:
    """The plain-text part of an email."""
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def member_moved(at: datetime, transfer_id: uuid.UUID | None = None) -> TeamMemberTransferred:
    """Tom moves from the South Office to the North Office (T2), announced to the North Office."""
    return TeamMemberTransferred.create(
        account_id="north",
        occurred_at=at,
        payload=TeamMemberTransferredPayload(
            agent_id="tom",
            agent_name="Tom Jones",
            transfer_id=transfer_id or uuid.uuid4(),
            from_account_id="south",
            from_account_name="South Office",
            to_account_name="North Office",
            by_user_id="admin-1",
        ),
    )
