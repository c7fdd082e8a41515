"""`leadflow-ops asyncapi`: the AsyncAPI document of every topic, generated from the services' code."""

from __future__ import annotations

import argparse
from pathlib import Path

from leadflow_ops import output
from leadflow_ops.settings import OpsSettings

Subcommands = argparse._SubParsersAction  # argparse names no public type for it


def register(commands: Subcommands[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    command = commands.add_parser(
        "asyncapi", parents=[common], help="print the AsyncAPI document of every topic (or write it to a file)",
        description="Generate the AsyncAPI 3 document from the four services' typed subscribers and declared "
                    "publishers (docs/asyncapi.yaml is this document). Connects to nothing.",
    )  # fmt: skip
    command.add_argument("--out", type=Path, metavar="FILE", help="write it to FILE instead of printing it")
    command.set_defaults(run=write_document)


async def write_document(args: argparse.Namespace, _settings: OpsSettings) -> int:
    # Imported here: it builds the four services' apps, 1.6 s of imports every other command does without.
    from leadflow_ops import asyncapi

    await output.document(asyncapi.document(), args.out)
    return 0
