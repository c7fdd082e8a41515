"""Kafka topic names: the one place they are spelled out.

Every topic is keyed by the brokerage account id, so one account's messages stay
ordered on one partition (DESIGN section 2).
"""

from __future__ import annotations

from dataclasses import dataclass

LEADS_INBOUND = "leads.inbound.v1"
LEADS_INTAKE = "leads.intake.v1"
LEADS_ACTIVITY = "leads.activity.v1"
LEADS_COMMANDS = "leads.commands.v1"
LEADS_EVENTS = "leads.events.v1"

DLQ_SUFFIX = ".dlq"


def dlq(topic: str) -> str:
    """Name of the dead-letter topic for `topic`."""
    return f"{topic}{DLQ_SUFFIX}"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int


def all_topics(partitions: int = 3) -> list[TopicSpec]:
    """Every topic leadflow uses, with its dead-letter topic."""
    main = [LEADS_INBOUND, LEADS_INTAKE, LEADS_ACTIVITY, LEADS_COMMANDS, LEADS_EVENTS]
    return [TopicSpec(t, partitions) for t in main] + [TopicSpec(dlq(t), 1) for t in main]
