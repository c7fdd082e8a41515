"""Helpers for the notifier's unit tests."""

from __future__ import annotations

from leadflow_notifier.domain.messages import Content, Outgoing
from leadflow_notifier.domain.preferences import Channel


def by_channel(messages: list[Outgoing]) -> dict[Channel, Content]:
    """The messages of a recipient with at most one push device, by channel."""
    found = {m.channel: m.content for m in messages}
    assert len(found) == len(messages), "more than one message on a channel"
    return found
