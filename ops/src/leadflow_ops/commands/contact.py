"""`leadflow-ops contact erase`: forget a contact of an account (decision 0050).

It publishes the same `EraseContact` command crm-api's `POST /v1/accounts/{account}/erasures` does,
normalizing the email and phone with crm-api's own functions; the router does the rest. With
`--wait`, it then reads the router's erasure record until the erasure is done.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from leadflow_crm_api.domain.erasure import contact_email, contact_phone
from leadflow_ops.connections import database
from leadflow_ops.errors import OpsError
from leadflow_ops.kafka_client import Republisher
from leadflow_ops.ledger import operator
from leadflow_ops.output import as_json, line, note
from leadflow_ops.settings import OpsSettings
from leadflow_shared import topics
from leadflow_shared.collections import ROUTER_ERASURES
from leadflow_shared.events.commands import EraseContact, EraseContactPayload

Subcommands = argparse._SubParsersAction  # argparse names no public type for it
POLL_SECONDS = 0.2


def register(commands: Subcommands[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    contact = commands.add_parser("contact", help="a lead's contact (the person)")
    subcommands = contact.add_subparsers(dest="contact_command", required=True, metavar="COMMAND")
    erase = subcommands.add_parser(
        "erase", parents=[common], help="forget a contact of an account in every service (an erasure request)",
        description="Publish an EraseContact command to leads.commands.v1: the router forgets the contact's "
                    "leads (by email, phone and/or lead id, in ACCOUNT only) and every service erases its copy. "
                    "The leads keep their ids, status and history. leads.events.v1 keeps its history.",
    )  # fmt: skip
    erase.add_argument("--account", required=True, help="the account (brokerage office) the contact belongs to")
    # Appended, then refused past one: argparse keeps the last of a repeated option without a word, and `--lead`
    # repeats, so `--email A --email B` read as both and erased B alone (helper 192).
    erase.add_argument("--email", action="append", default=[], help="the contact's email address (one)")
    erase.add_argument(
        "--phone", action="append", default=[], help="the contact's phone, in international form (+ and country code)"
    )
    erase.add_argument("--lead", action="append", default=[], metavar="LEAD_ID", help="a lead id (repeatable)")
    erase.add_argument("--reason", required=True, help="the ticket or reference of the request (no personal data)")
    erase.add_argument("--by", help="who asked (default: ops:<user>@<host>)")
    erase.add_argument(
        "--wait", type=float, default=0.0, metavar="SECONDS",
        help="wait up to SECONDS for the router to finish (needs OPS_MONGO__URL)",
    )  # fmt: skip
    erase.set_defaults(run=erase_contact)


def command_of(args: argparse.Namespace) -> EraseContact:
    """The command the arguments ask for; OpsError naming what is wrong (never its value)."""
    for option, given in (("--email", args.email), ("--phone", args.phone)):
        if len(given) > 1:
            raise OpsError(f"{option}: one per erasure ({len(given)} given); erase the others with a command each")
    try:
        email = contact_email(args.email[0]) if args.email else None
    except ValueError as exc:
        raise OpsError(f"--email: {exc}") from exc
    try:
        phone = contact_phone(args.phone[0]) if args.phone else None
    except ValueError as exc:
        raise OpsError(f"--phone: {exc}") from exc
    try:
        lead_ids = [uuid.UUID(lead) for lead in args.lead]
    except ValueError as exc:
        raise OpsError("--lead: not a lead id (a UUID)") from exc
    by = args.by or f"ops:{operator()}"[:64]
    try:
        payload = EraseContactPayload(email=email, phone=phone, lead_ids=lead_ids, by_user_id=by, reason=args.reason)
        return EraseContact.create(account_id=args.account, occurred_at=datetime.now(UTC), payload=payload)
    except ValidationError as exc:
        fields = ", ".join(".".join(str(part) for part in e["loc"]) or e["msg"] for e in exc.errors())
        raise OpsError(f"not a valid erasure request ({fields}): name --email, --phone or --lead") from exc


async def erase_contact(args: argparse.Namespace, settings: OpsSettings) -> int:
    command = command_of(args)
    async with Republisher(settings.kafka) as producer:
        landed = await producer.publish(
            topics.LEADS_COMMANDS, key=command.kafka_key(), value=command.model_dump_json().encode(), headers=[]
        )
    report: dict[str, object] = {"erasure_id": str(command.event_id), "account_id": command.account_id,
                                 "published_to": landed, "status": "requested"}  # fmt: skip
    status, erased = 0, ""
    if args.wait > 0:
        record = await _wait_for(settings, str(command.event_id), args.wait)
        if record is None:
            note(f"contact erase: not done within {args.wait:g} s; see the router's log and "
                 f"{topics.dlq(topics.LEADS_COMMANDS)}")  # fmt: skip
            status = 1
        else:
            lead_ids = [str(i) for i in record.get("lead_ids") or []]
            report |= {"status": "done", "lead_ids": lead_ids}
            erased = f", {len(lead_ids)} lead(s) erased"
    if args.json:
        as_json(report)
    else:
        line(f"erasure {command.event_id} of account {command.account_id} {report['status']}{erased} ({landed})")
    return status


async def _wait_for(settings: OpsSettings, erasure_id: str, seconds: float) -> dict[str, Any] | None:
    """The router's erasure record once it is done, or None after `seconds`."""
    deadline = time.monotonic() + seconds
    async with database(settings.mongo) as db:
        while True:
            record = await db[ROUTER_ERASURES].find_one({"_id": erasure_id, "status": "done"})
            if record is not None:
                return record
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(POLL_SECONDS)  # polling the router's record, bounded by the deadline
