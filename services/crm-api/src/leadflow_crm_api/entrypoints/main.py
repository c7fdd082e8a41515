"""Console command `leadflow-crm-api`."""

from __future__ import annotations

from leadflow_crm_api.bootstrap import create_app
from leadflow_crm_api.settings import CrmApiSettings
from leadflow_shared.http import serve
from leadflow_shared.settings_catalog import load_settings


def main() -> None:
    settings = load_settings(CrmApiSettings, "crm-api")
    serve(create_app(settings), settings.http)
