"""crm-api's HTTP edge: the API's error handling and body limits, its routes (`routes/`), the web app (`web/`).

Routes reach the runtime, the callers (token and agent record checked, `adapters/callers.py`) and the
publishers through `app.state` (`deps.py`).
"""

from __future__ import annotations

from fastapi import FastAPI

from leadflow_crm_api.bodies import BodyGuard, BodyLimits
from leadflow_crm_api.framing import NoFraming
from leadflow_crm_api.openapi import install as install_openapi
from leadflow_crm_api.problems import install_problem_handlers
from leadflow_crm_api.routes import (
    distribution,
    erasures,
    lead_work,
    leads,
    next_up,
    offer_links,
    offices,
    people,
    routing_info,
    sharing,
)
from leadflow_crm_api.routes import settings as account_settings
from leadflow_crm_api.web import app as web_app


def install(app: FastAPI, *, max_body_bytes: int) -> None:
    install_problem_handlers(app, realm="leadflow-crm-api")
    install_openapi(app)  # schema names without the module paths a clash with a shared model adds
    app.add_middleware(BodyGuard, limits=BodyLimits(max_bytes=max_body_bytes))
    app.add_middleware(NoFraming)  # outside BodyGuard: its 413 and 422 are not framed either (decision 0080)
    pieces = (sharing, account_settings, offices, distribution, people, offer_links, lead_work, next_up, routing_info)
    for module in (*pieces, erasures):
        app.include_router(module.router)
    web_app.install(app)  # after the API's error handlers: under /app, errors become pages
    app.include_router(leads.router)
