"""`leadflow-ops settings-reference`: every service's environment variables, generated from its settings class."""

from __future__ import annotations

import argparse
from pathlib import Path

from leadflow_ops import output
from leadflow_ops.settings import OpsSettings

Subcommands = argparse._SubParsersAction  # argparse names no public type for it


def register(commands: Subcommands[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    command = commands.add_parser(
        "settings-reference", parents=[common],
        help="print every service's environment variables as Markdown (or write them to a file)",
        description="Generate the settings reference from the services' settings classes: each variable's name, "
                    "type, default (none for a secret), allowed values and description (docs/settings.md is this "
                    "page). Connects to nothing.",
    )  # fmt: skip
    command.add_argument("--out", type=Path, metavar="FILE", help="write it to FILE instead of printing it")
    command.set_defaults(run=write_reference)


async def write_reference(args: argparse.Namespace, _settings: OpsSettings) -> int:
    # Imported here: it imports the four services' settings, which the other commands do without.
    from leadflow_ops import settings_reference

    await output.document(settings_reference.document(), args.out)
    return 0
