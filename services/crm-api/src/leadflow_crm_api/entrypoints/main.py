"""Console command `leadflow-crm-api`."""

from __future__ import annotations

from leadflow_crm_api.bootstrap import create_app
from leadflow_crm_api.settings import CrmApiSettings
from leadflow_shared.http import serve
from leadflow_shared.logs import configure_logging


def main() -> None:
    settings = CrmApiSettings()
    configure_logging("crm-api", settings.log_level, settings.log_format)
    serve(create_app(settings), settings.http)
