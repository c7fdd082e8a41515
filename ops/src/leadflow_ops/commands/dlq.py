"""`leadflow-ops dlq list|show|replay`: dead-letter topics (`<topic>.dlq`)."""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from pymongo.errors import PyMongoError

from leadflow_ops.connections import database
from leadflow_ops.dead_letters import Coordinates, ListedLetter
from leadflow_ops.errors import OpsError
from leadflow_ops.kafka_client import DeadLetterReader, Republisher
from leadflow_ops.ledger import ReplayLedger, operator
from leadflow_ops.output import as_json, iso, json_text, line, note, printable
from leadflow_ops.replay import Outcome, Replayer
from leadflow_ops.settings import OpsSettings

log = logging.getLogger(__name__)

Subcommands = argparse._SubParsersAction  # argparse names no public type for it


def register(commands: Subcommands[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    group = commands.add_parser(
        "dlq",
        help="dead-letter topics: list, show and replay dead letters",
        description="Dead-letter topics (<topic>.dlq). See ops/README.md.",
    )
    sub = group.add_subparsers(dest="dlq_command", required=True, metavar="COMMAND")

    listing = sub.add_parser(
        "list", parents=[common], help="one line per dead letter (no message bodies)",
        description="One line per dead letter: PARTITION:OFFSET, time, key, source record, service, error, channel "
                    "and recipient (notifier), event id and type, whether it was replayed, the reason. "
                    "Bodies hold personal data and are not printed: see `dlq show`.",
    )  # fmt: skip
    listing.add_argument("topic", metavar="TOPIC.dlq")
    listing.add_argument("--limit", type=_count, default=50,
                         help="the most recent N dead letters (default 50; 0: all)")  # fmt: skip
    listing.set_defaults(run=list_dead_letters)

    show = sub.add_parser("show", parents=[common], help="one dead letter: headers and body",
                          description="One dead letter with every header and its body (personal data: mind where "
                                      "you paste it).")  # fmt: skip
    show.add_argument("topic", metavar="TOPIC.dlq")
    show.add_argument("where", metavar="PARTITION:OFFSET", type=_coordinates)
    show.set_defaults(run=show_dead_letter)

    replay = sub.add_parser(
        "replay", parents=[common], help="republish dead letters to their source topic, once each",
        description="Republish dead letters to their source topic (header dlq-source-topic) with the original key "
                    "and body, the original's headers (not leadflow's dlq-* ones) and leadflow-replay headers. "
                    "Each dead letter is replayed once (recorded in MongoDB, ops_replays). Truncated or dropped "
                    "bodies or headers are refused. "
                    "Exit status 1 if any dead letter was refused or missing.",
    )  # fmt: skip
    replay.add_argument("topic", metavar="TOPIC.dlq")
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("--offset", dest="offsets", metavar="PARTITION:OFFSET", type=_coordinates, action="append",
                       help="a dead letter to replay (repeat for more)")  # fmt: skip
    which.add_argument("--all", action="store_true", help="every dead letter of the topic, as of now")
    replay.add_argument("--dry-run", action="store_true", help="say what would be replayed; publish nothing")
    replay.set_defaults(run=replay_dead_letters)


async def list_dead_letters(args: argparse.Namespace, settings: OpsSettings) -> int:
    async with DeadLetterReader(settings.kafka) as reader:
        letters, total = await reader.latest(args.topic, args.limit or None)
    replayed = await _replayed_if_reachable(settings, letters)
    rows = [d.summary | {"replayed": _replay_fact(replayed.get(d.ref))} for d in letters]
    if args.json:
        as_json({"topic": args.topic, "total": total, "shown": len(rows), "dead_letters": rows})
        return 0
    for row in rows:
        line(_list_line(row))
    note(f"{args.topic}: {total} dead letter(s), {len(rows)} shown (oldest first)"
         + ("; --limit 0 shows all" if len(rows) < total else ""))  # fmt: skip
    return 0


async def show_dead_letter(args: argparse.Namespace, settings: OpsSettings) -> int:
    where: Coordinates = args.where
    async with DeadLetterReader(settings.kafka) as reader:
        found = (await reader.at(args.topic, [where])).get(where)
    if found is None:
        raise OpsError(f"no record at {where} on {args.topic}")
    details = found.details()
    if args.json:
        as_json(details)
        return 0
    line(f"dead letter {printable(found.ref)}")
    line(f"time: {details['time']}")
    line(f"key: {printable(str(details['key']))}")
    line("headers:")
    for name, value in details["headers"]:
        line(f"  {printable(name)}: {'(null)' if value is None else printable(value)}")
    line(f"body ({details['bytes']} bytes):")
    if "body" in details:
        line(json_text(details["body"]))
    elif "body_text" in details:
        line(printable(details["body_text"]))
    else:
        line("(not UTF-8; base64) " + details["body_base64"])
    return 0


async def replay_dead_letters(args: argparse.Namespace, settings: OpsSettings) -> int:
    """`--all` reads and replays the topic a chunk at a time (`DeadLetterReader.chunks`): the letters' bodies are not
    all held at once, only each one's outcome."""

    def report(outcome: Outcome) -> None:
        if not args.json:
            line(_replay_line(outcome))

    async with contextlib.AsyncExitStack() as resources:
        reader = await resources.enter_async_context(DeadLetterReader(settings.kafka))
        db = await resources.enter_async_context(database(settings.mongo))
        publisher = None if args.dry_run else await resources.enter_async_context(Republisher(settings.kafka))
        replayer = Replayer(publisher=publisher, ledger=ReplayLedger(db), clock=_now, operator=operator())
        outcomes: list[Outcome] = []
        if args.all:
            async for letters in reader.chunks(args.topic):
                outcomes += await replayer.run(args.topic, letters, [], report)
        else:
            wanted: list[Coordinates] = args.offsets
            found = await reader.at(args.topic, wanted)
            missing = [c for c in dict.fromkeys(wanted) if c not in found]
            outcomes = await replayer.run(args.topic, found.values(), missing, report)
    counts = Counter(str(o.status) for o in outcomes)
    if args.json:
        as_json({"topic": args.topic, "dry_run": args.dry_run, "counts": counts,
                 "outcomes": [o.as_dict() for o in outcomes]})  # fmt: skip
    else:
        summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no dead letters"
        note(summary + (" (dry run: nothing published)" if args.dry_run else ""))
    return 0 if all(o.ok for o in outcomes) else 1


async def _replayed_if_reachable(settings: OpsSettings, letters: list[ListedLetter]) -> dict[str, dict[str, Any]]:
    """The ledger's records of these dead letters; without MongoDB, none (the list still helps)."""
    try:
        async with database(settings.mongo) as db:
            return await ReplayLedger(db).replayed(letters)
    except PyMongoError as exc:
        note(f"warning: could not read the replay ledger ({type(exc).__name__}): the 'replayed' column is unknown")
        return {}


def _replay_fact(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    if doc is None:
        return None
    return {"at": doc.get("replayed_at"), "by": doc.get("by"), "to": doc.get("replayed_to")}


def _list_line(row: dict[str, Any]) -> str:
    source = str(row["source_topic"] or "?")
    if row["source_partition"] is not None:
        source += f"[{row['source_partition']}]"
    if row["source_offset"] is not None:
        source += f"@{row['source_offset']}"
    parts = [f"{row['partition']}:{row['offset']}", row["time"], f"key={row['key']}", f"source={source}",
             f"service={row['service']}", f"error={row['error_type']}"]  # fmt: skip
    if row["channel"] or row["recipient"]:
        parts.append(f"channel={row['channel']} recipient={row['recipient']}")
    if row["event_id"]:
        parts.append(f"event={row['event_id']} type={row['event_type']}")
    if row["truncated_from_bytes"] is not None:
        parts.append(f"TRUNCATED(from {row['truncated_from_bytes']} bytes)")
    if row["value_dropped"]:
        parts.append("BODY-DROPPED")
    if row["replay_of"]:
        parts.append(f"replay-of={row['replay_of']}")
    if (replayed := row["replayed"]) is not None:
        parts.append(f"REPLAYED({iso(replayed['at'])})")
    parts.append(f"reason={row['reason']!r}")
    return printable("  ".join(str(p) for p in parts))


def _replay_line(outcome: Outcome) -> str:
    event = f"{outcome.event_type} {outcome.event_id}" if outcome.event_id else "-"
    target = f"-> {outcome.to}" if outcome.to else ""
    text = "  ".join(p for p in (f"{outcome.status:<16}", outcome.ref, event, target, outcome.detail) if p)
    return printable(text)


def _now() -> datetime:
    return datetime.now(UTC)


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a count (0 or more)")
    return int(text)


def _coordinates(text: str) -> Coordinates:
    try:
        return Coordinates.parse(text)
    except OpsError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
