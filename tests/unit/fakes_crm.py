"""What crm-api's projection tests share: the person the erasure tests erase, and a views port that lets another
consumer's projection run in the middle of one (another partition, another replica), for the in-memory views (unit)
and `LeadViews` on nx-27017 (integration).

Imported by unit and integration tests alike (pyproject puts tests/unit on pytest's sys.path; it holds no tests).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from leadflow_crm_api.domain.lead_row import LeadRow
from leadflow_crm_api.domain.projection import RowState
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import LeadEvent

# The person the erasure tests erase, and every trace of them a collection could keep.
CONTACT = Contact(first_name="Quenby", last_name="Zylstra", email="quenby.z@example.com", phone="+14155550177")
TRACES = ("Quenby", "Zylstra", "quenby.z@example.com", "+14155550177")
SOURCE = LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website")


class Interleaving:
    """Mixed in before a views class: runs `meanwhile` once, when the projection first makes the call named `at`
    (`state`, `parked` or `row`), after that call's read."""

    at: str | None = None
    meanwhile: Callable[[], Awaitable[None]] | None = None

    def ran(self) -> bool:
        """Whether `meanwhile` ran."""
        return self.meanwhile is None

    async def _interleave(self, call: str) -> None:
        if call == self.at and (run := self.meanwhile) is not None:
            self.meanwhile = None
            await run()

    async def state(self, lead_id: str) -> RowState:
        read: RowState = await super().state(lead_id)  # type: ignore[misc]
        await self._interleave("state")
        return read

    async def parked(self, lead_id: str) -> list[LeadEvent]:
        read: list[LeadEvent] = await super().parked(lead_id)  # type: ignore[misc]
        await self._interleave("parked")
        return read

    async def row(self, lead_id: str) -> LeadRow | None:
        read: LeadRow | None = await super().row(lead_id)  # type: ignore[misc]
        await self._interleave("row")
        return read


class Rechecks:
    """The request's `Members` (adapters/callers.py) as a use case uses it: told whose records it changed."""

    def __init__(self) -> None:
        self.users: list[str] = []

    async def recheck(self, user_id: str, account_id: str | None = None) -> None:
        del account_id
        self.users.append(user_id)
