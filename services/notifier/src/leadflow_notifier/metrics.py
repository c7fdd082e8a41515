"""The notifier's metrics, on the runtime's registry. Labels: channel and a fixed reason token."""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram

CHANNELS: Final = ("email", "sms", "push")
# The fixed reason tokens of DeliveryError (domain/errors.py and the adapters). Transient ones out
# of retries are the "retries exhausted" alert; the others are refusals.
TRANSIENT_REASONS: Final = ("timeout", "unavailable", "throttled", "abandoned")
PERMANENT_REASONS: Final = ("auth", "rejected", "redirected", "unregistered", "unreadable", "disabled")


class NotifierMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.sent = Counter(
            "notifier_notifications_sent_total", "Notifications a provider accepted.", ["channel"], registry=registry
        )
        self.failed = Counter(
            "notifier_notifications_failed_total",
            "Notifications dead-lettered, by channel and reason (permanent ones, and transient ones out of retries).",
            ["channel", "reason"],
            registry=registry,
        )
        self.retries = Counter(
            "notifier_delivery_retries_total",
            "Delivery attempts retried after a transient failure.",
            ["channel", "reason"],
            registry=registry,
        )
        self.skipped = Counter(
            "notifier_notifications_skipped_total",
            "Deliveries not made: already done (redelivered event) or in progress elsewhere.",
            ["channel", "reason"],
            registry=registry,
        )
        self.redriven = Counter(
            "notifier_deliveries_redriven_total",
            "Pending deliveries taken over after their lease ran out (the process sending them died).",
            ["channel"],
            registry=registry,
        )
        self.replayed = Counter(
            "notifier_deliveries_replayed_total",
            "Failed deliveries attempted again because an operator replayed their dead letter (decision 0044).",
            ["channel"],
            registry=registry,
        )
        self.unknown_recipients = Counter(
            "notifier_recipients_unknown_total",
            "Notices not sent because the directory does not know the recipient, by event type"
            " (a lead share's outside realtor; other types are dead-lettered instead).",
            ["type"],
            registry=registry,
        )
        self.departed_recipients = Counter(
            "notifier_recipients_departed_total",
            "Notices not sent because their agent left the event's office when it is read (inactive, T3, or moved"
            " to another office, T2), by event type.",
            ["type"],
            registry=registry,
        )
        self.latency = Histogram(
            "notifier_delivery_latency_seconds",
            "From the event's occurred_at to the provider accepting the notification.",
            ["channel"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=registry,
        )
        # Exported at zero from the start: the first failure after a pod starts is an increase.
        for channel in CHANNELS:
            self.sent.labels(channel)
            for reason in (*TRANSIENT_REASONS, *PERMANENT_REASONS):
                self.failed.labels(channel, reason)
            for reason in TRANSIENT_REASONS:
                self.retries.labels(channel, reason)
