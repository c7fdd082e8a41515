"""A day with a flood of new leads in one office still has its digest, bounded (N1's daily digest, decisions 0013,
0088; helper 176's review, which failed before).

Real MongoDB wire (nx-27017 or MONGODB_URL) and the real SMTP sink. A day's digest lists every new lead of the office
in one email (`digest_email`: no bound on its rows or its size), and the run's pending delivery record holds that
email (`DeliveryLog.begin`: `content`, text and HTML). Website forms are public: anyone can send an office 10,000
leads whose names intake accepts at their longest (100 + 100 characters, one letter required, the rest emoji). That
day's digest is then too large for any SMTP relay: refused with a 5xx, failed for good, and every lead of the day,
the real ones among them, is in no digest. Now a digest lists its first DIGEST_ROWS leads and "and N more" with a link
to the office's list, so that one office's day, however large, is still told. (A thousand leads show it: the size
asserted is what 10,000 took past the relays' limits.)
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from fakes_shared import Clock
from notifier_harness import digest_sender as digests
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_devstack.servers import MailSink
from leadflow_devstack.testing import fresh_database
from leadflow_intake.domain.normalize import check_name
from leadflow_notifier.adapters.repository import AgentDirectory, DigestItems, PreferencesDoc, ensure_indexes
from leadflow_notifier.adapters.smtp import SmtpMailer
from leadflow_notifier.domain.digest import DIGEST_ROWS, DigestItem
from leadflow_shared.clock import epoch_ms

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

FLOOD = 1_000  # leads of one day in the flooded office


@pytest_asyncio.fixture(loop_scope="session")
async def db(mongo_url: str) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    async with fresh_database(mongo_url, "digest_flood") as database:
        yield database


async def office(db: AsyncDatabase[dict[str, Any]], account: str) -> str:
    """An office (digest at 07:00 UTC) with an admin subscribed to its digest; returns the admin's address."""
    admin, address = f"adm-{account}", f"adm-{account}@example.com"
    await db["accounts"].insert_one({"_id": account, "name": account, "time_zone": "UTC", "digest_hour": 7})
    await db["staff"].insert_one({"_id": admin, "account_id": account, "name": "Ada", "email": address})
    await AgentDirectory(db).save_preferences(admin, PreferencesDoc(account_id=account, digest=True))
    return address


async def test_an_office_sent_ten_thousand_leads_in_a_day_still_gets_its_digest_and_others_theirs(
    db: AsyncDatabase[dict[str, Any]], sink: MailSink, mailer: SmtpMailer
) -> None:
    """North is sent 10,000 leads on the 9th, names at intake's longest (one letter, the rest emoji), and one real
    lead, Jane Doe; South one lead. The digest run at 07:00 on the 10th: North's admin gets no digest at all. Its one
    email is 10,000 rows, about 18 MB of text and HTML and over 50 MB as MIME: the SMTP sink (aiosmtpd's 32 MiB; a
    Postfix relay's default is 10 MB) answers 552, the delivery is failed for good (`rejected`, no dead letter, no
    retry), and Jane Doe is in no digest. On MongoDB proper the pending record (the whole email in `content`) is over
    the 16 MiB document limit: `begin` raises and the run stops before South's digest (nx-27017 takes the document)."""
    await ensure_indexes(db)
    tag = uuid.uuid4().hex[:6]
    flooded, other = f"a-north-{tag}", f"b-south-{tag}"
    flooded_admin, other_admin = await office(db, flooded), await office(db, other)

    # The longest names intake's forms accept (`check_name`; the event's Contact takes 100 + 100 characters).
    first, last = check_name("a" + "\U0001f600" * 99), check_name("b" + "\U0001f600" * 99)
    assert len(first) == len(last) == 100
    day = datetime(2026, 3, 9, 8, 0, tzinfo=UTC)
    filed = epoch_ms(day + timedelta(hours=13))
    items = DigestItems(db)
    await asyncio.gather(
        *(
            items.add(
                DigestItem(flooded, str(uuid.uuid4()), f"{first} {last}", "Website", epoch_ms(day) + i, stored_ms=filed)
            )
            for i in range(FLOOD)
        )
    )
    await items.add(DigestItem(flooded, str(uuid.uuid4()), "Jane Doe", "Website", epoch_ms(day), stored_ms=filed))
    await items.add(DigestItem(other, str(uuid.uuid4()), "Sue South", "Website", epoch_ms(day), stored_ms=filed))

    clock = Clock(datetime(2026, 3, 10, 7, 0, 30, tzinfo=UTC))
    outcome: BaseException | int
    try:
        outcome = await digests(db, mailer, clock).run_once()
    except Exception as exc:  # noqa: BLE001
        outcome = exc
    # Every later run while the day's digest is sendable.
    for later in (timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)):
        clock.now = datetime(2026, 3, 10, 7, 0, 30, tzinfo=UTC) + later
        with contextlib.suppress(Exception):
            await digests(db, mailer, clock).run_once()

    to_other = [m["Subject"] for m in sink.received() if m["X-Envelope-To"] == other_admin]
    to_flooded = [m["Subject"] for m in sink.received() if m["X-Envelope-To"] == flooded_admin]
    record = await db["notifier_deliveries"].find_one(
        {"_id": f"digest:{flooded}:2026-03-10:email:adm-{flooded}"}, {"status": 1, "reason": 1}
    )
    assert to_other == ["1 new lead on Tue 10 Mar"], f"South's admin got {to_other} (first run: {outcome!r})"
    assert to_flooded, f"North's admin got no digest: Jane Doe is in none (its delivery record: {record})"
    [digest] = [m for m in sink.received() if m["X-Envelope-To"] == flooded_admin]
    assert len(digest.as_bytes()) < 1024 * 1024, "bounded: the first leads, then how many more"
    plain = digest.get_body(("plain",))
    assert plain is not None
    assert f"and {FLOOD + 1 - DIGEST_ROWS} more" in plain.get_content()
