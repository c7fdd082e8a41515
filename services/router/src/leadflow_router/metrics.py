"""The router's Prometheus metrics, on the process's injected registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class RouterMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.decisions = Counter(
            "router_decisions_total", "New leads routed, by deciding rule.", ["rule"], registry=registry
        )
        self.transfers = Counter(
            "router_transfers_total",
            "Transfers applied: office transfers (T2) lead, team_member; lead sharing (T1) share.",
            ["kind"],
            registry=registry,
        )
        self.claims = Counter("router_claims_total", "Offers claimed by an agent.", registry=registry)
        self.expiries = Counter(
            "router_deadlines_fired_total",
            "Deadlines fired by the sweeper.",
            registry=registry,
        )
        self.deadline_failures = Counter(
            "router_deadline_failures_total",
            "Due deadlines the sweeper could not fire (the lead's account unknown or unreadable, a fault): each is"
            " looked at again a minute later (decision 0077).",
            registry=registry,
        )
        self.unreadable_records = Counter(
            "router_unreadable_records_total",
            "Routing records this version could not read (written by a newer version, or damaged), by read: due"
            " (the sweeper's deadlines), unflushed (outboxes a crash left), batch (leads of an outbox document a crash"
            " left). A due or unflushed one is set aside a minute; a batch's is left out (decision 0091).",
            ["read"],
            registry=registry,
        )
        self.cas_conflicts = Counter(
            "router_cas_conflicts_total", "Compare-and-set writes that lost a race.", ["path"], registry=registry
        )
        self.erased_inquiries = Counter(
            "router_erased_inquiries_total",
            "Inquiries taken unrouted: made before their contact was erased, delivered after it (decision 0106).",
            registry=registry,
        )
        self.events_published = Counter(
            "router_events_published_total", "Events published to leads.events.v1.", registry=registry
        )
        self.timer_lateness = Histogram(
            "router_timer_lateness_seconds",
            "How late a deadline fired after it was due.",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
            registry=registry,
        )
        self.sweeps = Counter(
            "router_sweeps_total", "Sweeper passes over the deadline index (a stalled sweeper stops counting).",
            registry=registry,
        )  # fmt: skip
        self.overdue = Gauge(
            "router_deadline_overdue_seconds",
            "How long the most overdue unfired deadline has been due, at the last sweep (0: none due).",
            registry=registry,
        )
        self.events_decided = Counter(
            "router_events_decided_total",
            "Events decided, by type (LeadOffered, LeadClaimed...): the funnel's middle. A decision that lost a"
            " compare-and-set race is decided again and counted again (router_cas_conflicts_total).",
            ["type"],
            registry=registry,
        )
        for kind in ("LeadAssigned", "LeadOffered", "LeadClaimed", "OfferExpired"):
            self.events_decided.labels(kind)
