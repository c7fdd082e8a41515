"""Console command `leadflow-notifier`."""

from __future__ import annotations

from leadflow_notifier.bootstrap import create_app
from leadflow_notifier.settings import NotifierSettings
from leadflow_shared.http import serve
from leadflow_shared.settings_catalog import load_settings


def main() -> None:
    settings = load_settings(NotifierSettings, "notifier")
    serve(create_app(settings), settings.http)
