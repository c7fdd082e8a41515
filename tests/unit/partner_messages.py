"""Partners' messages as a partner sends them: signed for leads.inbound.v1 (decision 0098).

The embedded stack (development, no INTAKE_PARTNERS__PRODUCERS) knows one demo partner, `homefinder`,
for every account, with the development secret; tests sign as it unless they configure others.
"""

from __future__ import annotations

from leadflow_intake.domain import partner_signature
from leadflow_intake.settings import DEVELOPMENT_SECRET
from leadflow_shared import topics

DEMO_PARTNER = "homefinder"


def signature(
    value: bytes, key: bytes | None, secret: str = DEVELOPMENT_SECRET, topic: str = topics.LEADS_INBOUND
) -> str:
    return partner_signature.sign(secret.encode(), topic, key, value)


def signed(value: bytes, key: bytes | None, secret: str = DEVELOPMENT_SECRET) -> list[tuple[str, bytes]]:
    """The record headers (aiokafka's form) that sign `value` under `key` as the partner with `secret`."""
    return [(partner_signature.HEADER, signature(value, key, secret).encode())]
