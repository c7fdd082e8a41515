"""crm-api's own Prometheus metrics, on the process's injected registry (dead letters, retries, HTTP
and consumer lag are the runtime's, common to every service)."""

from __future__ import annotations

import typing

from prometheus_client import CollectorRegistry, Counter

from leadflow_shared.events.routing import RoutingEvent


class CrmMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.projected = Counter(
            "crm_api_events_projected_total",
            "Events of leads.events.v1 folded into the CRM views, by type (a redelivery, which changes nothing "
            "in the views, counts again). Its rate beside router_events_published_total is the projection's pace.",
            ["type"],
            registry=registry,
        )
        for event_type in typing.get_args(typing.get_args(RoutingEvent)[0]):  # Annotated[Union[...], discriminator]
            self.projected.labels(event_type.__name__)
