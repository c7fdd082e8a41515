"""leadflow router: decides who gets each lead and emits every decision on leads.events.v1."""
