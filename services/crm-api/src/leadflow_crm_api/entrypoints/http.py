"""crm-api's HTTP edge: the API's error handling and body limits, its routes (`routes/`), the web app (`web/`).

Routes reach the runtime, the callers (token and agent record checked, `adapters/callers.py`) and the
publishers through `app.state` (`deps.py`).
"""

from __future__ import annotations

from leadflow_crm_api.answer_headers import answer_policy
from leadflow_crm_api.bodies import BodyGuard, BodyLimits
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
from leadflow_shared.http import ServiceApp


def install(app: ServiceApp, *, max_body_bytes: int) -> None:
    install_problem_handlers(app, realm="leadflow-crm-api")
    install_openapi(app)  # schema names without the module paths a clash with a shared model adds
    app.add_middleware(BodyGuard, limits=BodyLimits(max_bytes=max_body_bytes))
    app.answer_policy = answer_policy  # on every answer, the 500 page and BodyGuard's 413 and 422 included (0092)
    pieces = (sharing, account_settings, offices, distribution, people, offer_links, lead_work, next_up, routing_info)
    for module in (*pieces, erasures):
        app.include_router(module.router)
    web_app.install(app)  # after the API's error handlers: under /app, errors become pages
    app.include_router(leads.router)
