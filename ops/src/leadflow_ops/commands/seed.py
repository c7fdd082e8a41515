"""`leadflow-ops seed FILE`: load account configuration, with the router's own loader (docs/account-config.md)."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from pydantic import ValidationError

from leadflow_ops.connections import database
from leadflow_ops.errors import OpsError
from leadflow_ops.output import as_json, line
from leadflow_ops.settings import OpsSettings
from leadflow_router.adapters.account_config import load_account_config

Subcommands = argparse._SubParsersAction  # argparse names no public type for it


def register(commands: Subcommands[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    seed = commands.add_parser(
        "seed", parents=[common], help="load accounts, agents and staff from a JSON file (like leadflow-router seed)",
        description="Validate FILE (docs/account-config.md) and write each account, agent and staff member in it, "
                    "replacing the stored ones; nothing is written if the file is invalid. Safe to rerun.",
    )  # fmt: skip
    seed.add_argument("file", type=Path, metavar="FILE")
    seed.set_defaults(run=seed_accounts)


async def seed_accounts(args: argparse.Namespace, settings: OpsSettings) -> int:
    path: Path = args.file
    try:
        raw = json.loads(await asyncio.to_thread(path.read_text, encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise OpsError(f"cannot read {path}: {exc}") from exc
    async with database(settings.mongo) as db:
        try:
            accounts = await load_account_config(db, raw)
        except ValidationError as exc:  # before anything was written
            raise OpsError(f"{path} is not valid account configuration (nothing written):\n{exc}") from exc
    if args.json:
        as_json({"file": str(path), "database": settings.mongo.database, "accounts": accounts})
    else:
        line(f"seeded {accounts} account(s) from {path} into database {settings.mongo.database!r}")
    return 0
