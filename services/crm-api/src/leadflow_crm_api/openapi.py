"""crm-api's OpenAPI document: FastAPI's, with the schema names a clash with leadflow_shared made long put back.

crm-api publishes shared models (the routing rule set) beside its own. Two classes of one name (`AgentAction`:
the activity enum of api.py, and the rule action of shared/routing_rules.py) make pydantic name both by their
module, which would rename a schema clients already use. So crm-api's own gets its short name back, a shared
one is named after its module (`RoutingRulesAgentAction`), and a copy pydantic keeps under a mode name
(`AgentAction-Output`, the same schema) is folded into the one it copies.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI

OWN, SHARED = "leadflow_crm_api__", "leadflow_shared__"
REF = "#/components/schemas/"


def _short_names(schemas: Mapping[str, Any]) -> dict[str, str]:
    """Old name -> new name for every module-qualified schema name that can be shorter without a clash."""
    own = Counter(name.rsplit("__", 1)[1] for name in schemas if name.startswith(OWN))
    renamed: dict[str, str] = {}
    for name in schemas:
        short = name.rsplit("__", 1)[-1]
        if name.startswith(SHARED):
            module = name[len(SHARED) :].split("__")[-2]
            short = "".join(part.title() for part in module.split("_")) + short
        elif not name.startswith(OWN) or own[short] > 1:
            continue
        if short not in schemas:
            renamed[name] = short
    for name, schema in schemas.items():
        twin = next((n for n in renamed if schemas[n] == schema), None)
        if name.endswith(("-Input", "-Output")) and twin is not None:
            renamed[name] = renamed[twin]
    return renamed


def with_short_names(spec: dict[str, Any]) -> dict[str, Any]:
    renamed = _short_names(spec["components"]["schemas"])
    text = json.dumps(spec)
    for old, new in renamed.items():
        text = text.replace(json.dumps(REF + old), json.dumps(REF + new))
    tidy: dict[str, Any] = json.loads(text)
    schemas = tidy["components"]["schemas"]
    tidy["components"]["schemas"] = dict(sorted((renamed.get(n, n), s) for n, s in schemas.items()))
    return tidy


def install(app: FastAPI) -> None:
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = with_short_names(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
