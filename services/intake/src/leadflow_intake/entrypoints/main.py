"""Console command `leadflow-intake`."""

from __future__ import annotations

from leadflow_intake.bootstrap import create_app
from leadflow_intake.settings import IntakeSettings
from leadflow_shared.http import serve
from leadflow_shared.logs import configure_logging


def main() -> None:
    settings = IntakeSettings()
    configure_logging("intake", settings.log_level)
    serve(create_app(settings), settings.http)
