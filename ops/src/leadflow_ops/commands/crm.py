"""`leadflow-ops crm rebuild-views`: crm-api's views built again from leads.events.v1 (decision 0045)."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from leadflow_crm_api.rebuild import RebuildAbortedError, RebuildRefusedError, abandon_rebuild, rebuild_views
from leadflow_ops.output import as_json, line, note
from leadflow_ops.settings import OpsSettings

Subcommands = argparse._SubParsersAction  # argparse names no public type for it


def register(commands: Subcommands[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    crm = commands.add_parser("crm", help="crm-api's views")
    subcommands = crm.add_subparsers(dest="crm_command", required=True, metavar="COMMAND")
    rebuild = subcommands.add_parser(
        "rebuild-views", parents=[common], help="rebuild the lead views and timelines from leads.events.v1",
        description="Replay leads.events.v1 into a fresh generation of crm-api's views while crm-api keeps "
                    "serving, keep what people wrote (profiles, labels, notes, statuses), then switch over.",
    )  # fmt: skip
    rebuild.add_argument(
        "--keep-old", action="store_true",
        help="keep the previous generation's collections (until the next rebuild reuses them)",
    )  # fmt: skip
    rebuild.add_argument(
        "--abandon", action="store_true", help="end a rebuild whose process died while building, instead of rebuilding"
    )
    rebuild.set_defaults(run=rebuild_views_command)


async def rebuild_views_command(args: argparse.Namespace, settings: OpsSettings) -> int:
    if args.abandon:
        ended = await abandon_rebuild(settings)
        if args.json:
            as_json({"abandoned": ended})
        else:
            line("abandoned the unfinished rebuild" if ended else "no rebuild was under way")
        return 0
    try:
        report = await rebuild_views(settings, progress=note, keep_old=args.keep_old)
    except (RebuildRefusedError, RebuildAbortedError) as exc:
        note(f"rebuild-views: {exc}")
        return 1
    if args.json:
        as_json(asdict(report))
    else:
        line(f"generation {report.generation} active (was {report.previous_generation}): {report.leads} leads, "
             f"{report.timeline_entries} timeline entries, {report.events_replayed} events replayed and "
             f"{report.events_caught_up} caught up, in {report.seconds:.1f} s")  # fmt: skip
    return 0
