"""Console command `leadflow-router`: run the service, or `seed FILE` to load account configuration."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from leadflow_router.adapters.account_config import load_account_config
from leadflow_router.settings import MissingApiTokenError, RouterSettings
from leadflow_shared.mongo import make_mongo_client
from leadflow_shared.settings_catalog import load_settings


async def _seed(settings: RouterSettings, config: object) -> None:
    client = make_mongo_client(settings.mongo, app_name="leadflow-router-seed")
    try:
        await load_account_config(client[settings.mongo.database], config)
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="leadflow-router")
    sub = parser.add_subparsers(dest="command")
    seed = sub.add_parser("seed", help="load accounts and agents from a JSON file")
    seed.add_argument("file", type=Path)
    args = parser.parse_args(argv)
    settings = load_settings(RouterSettings, "router")
    if args.command == "seed":
        asyncio.run(_seed(settings, json.loads(args.file.read_text())))
        return
    try:
        settings.require_api_token()
    except MissingApiTokenError as exc:
        parser.exit(2, f"leadflow-router: {exc}\n")
    # Imported here: `seed` needs none of the service (web app, FastStream, handlers), which took a third of
    # its second of CPU; the test suite seeds some sixty times a run.
    from leadflow_router.bootstrap import create_app
    from leadflow_shared.http import serve

    serve(create_app(settings), settings.http)
