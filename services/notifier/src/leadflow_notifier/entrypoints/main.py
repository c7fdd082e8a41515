"""Console command `leadflow-notifier`."""

from __future__ import annotations

from leadflow_notifier.bootstrap import create_app
from leadflow_notifier.settings import NotifierSettings
from leadflow_shared.http import serve
from leadflow_shared.logs import configure_logging


def main() -> None:
    settings = NotifierSettings()
    configure_logging("notifier", settings.log_level, settings.log_format)
    serve(create_app(settings), settings.http)
