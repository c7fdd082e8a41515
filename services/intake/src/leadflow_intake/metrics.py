"""Intake's metrics, on the process's injected registry; labels are fixed, low-cardinality sets."""

from __future__ import annotations

from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Histogram

Source = Literal["website", "listing_inquiry", "webhook", "partner"]
SOURCES: tuple[Source, ...] = ("website", "listing_inquiry", "webhook", "partner")
# invalid: fails validation or normalization; too_large: over a size limit; unauthorized: bad webhook
# signature, or a partner message not signed by its partner for its account (decision 0098); conflict:
# idempotency key reused for another request; unknown_account; too_slow: the body
# did not arrive in time (408, decision 0071); client_left: the client went away before its body was in;
# unavailable: MongoDB or Kafka away (503, try again); error: any other 5xx.
REASONS = (
    "invalid",
    "too_large",
    "unauthorized",
    "conflict",
    "unknown_account",
    "too_slow",
    "client_left",
    "unavailable",
    "error",
)


class IntakeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.received = Counter(
            "intake_leads_received_total", "Lead submissions received, by source.", ["source"], registry=registry
        )
        self.accepted = Counter(
            "intake_leads_accepted_total",
            "Lead submissions accepted (202 or published), by source; includes duplicates.",
            ["source"],
            registry=registry,
        )
        self.duplicates = Counter(
            "intake_leads_duplicate_total",
            "Accepted submissions whose idempotency key was seen before (nothing new published), by source.",
            ["source"],
            registry=registry,
        )
        self.rejected = Counter(
            "intake_leads_rejected_total", "Lead submissions refused, by source and reason.", ["source", "reason"],
            registry=registry,
        )  # fmt: skip
        self.unsigned = Counter(
            "intake_partner_unsigned_accepted_total",
            "Partner messages taken without a signature (INTAKE_PARTNERS__UNSIGNED=accept, decision 0098): while it is "
            "above zero, some partner does not sign yet (intake's log names it).",
            registry=registry,
        )
        self.request_seconds = Histogram(
            "intake_request_seconds",
            "Latency of intake's HTTP lead endpoints, from request to response, by source.",
            ["source"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=registry,
        )
        # Each source's series, made once, not looked up per lead (`labels` takes a lock and checks its
        # values). The counts export zeros, so rates and alerts work before the first lead; a latency
        # series appears with its source's first HTTP request (never for partners).
        self._received = {source: self.received.labels(source) for source in SOURCES}
        self._accepted = {source: self.accepted.labels(source) for source in SOURCES}
        self._duplicates = {source: self.duplicates.labels(source) for source in SOURCES}
        self._seconds: dict[Source, Histogram] = {}

    def receiving(self, source: Source) -> None:
        """A submission from `source` was received."""
        self._received[source].inc()

    def answered(self, source: Source, seconds: float) -> None:
        """An HTTP lead request from `source` was answered after `seconds`."""
        histogram = self._seconds.get(source)
        if histogram is None:
            histogram = self._seconds[source] = self.request_seconds.labels(source)
        histogram.observe(seconds)

    def outcome(self, source: Source, *, rejected: str | None = None, duplicate: bool = False) -> None:
        if rejected is not None:
            self.rejected.labels(source, rejected).inc()
            return
        self._accepted[source].inc()
        if duplicate:
            self._duplicates[source].inc()
