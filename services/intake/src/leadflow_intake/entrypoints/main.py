"""Console command `leadflow-intake`: run the service, or `leadflow-intake contract DIR` to write the contract."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from leadflow_intake import contract
from leadflow_intake.bootstrap import create_app
from leadflow_intake.settings import IntakeSettings
from leadflow_shared.http import serve
from leadflow_shared.settings_catalog import load_settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="leadflow-intake", description="leadflow intake service")
    commands = parser.add_subparsers(dest="command")
    write = commands.add_parser("contract", help="write the partner contract (AsyncAPI, JSON Schema) into DIR")
    write.add_argument("directory", type=Path)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "contract":
        for path in contract.write(args.directory):
            sys.stdout.write(f"{path}\n")
        return
    settings = load_settings(IntakeSettings, "intake")
    serve(create_app(settings), settings.http)
