"""A task's due date (the lead page's Work form and the JSON activities route, one use case: `act_on_lead`) is a time
leadflow can keep: its UTC form exists, between the years 1970 and 2999. One at the calendar's edge with an offset
(9999-12-31T23:30 in Los Angeles, 0001-01-01T00:30 nine hours east of UTC) was taken, published to Kafka, and then
failed building the timeline summary (`activity_summary`'s conversion to UTC overflowed): a 500 after publishing,
and "Try again" published it again (found by helper 130). Now it is refused by field, nothing published; and the
timeline entry is built before the publish, its summary total. The form's hidden `tz` (the page's script sets it)
of hundreds of parts ("a/a/.../b") made zoneinfo recurse past the interpreter's limit: a 500 (helper 191, session
39); any zone it cannot load is read as UTC (`known_zone`).

crm-api's whole app in-process on the session's Tansu and nx-27017, the router behind its HTTP app
(routing_world.py), as tests/integration/test_web_answers.py runs it; its activity publisher wrapped to count.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from zoneinfo import ZoneInfo

import httpx
import pytest
import pytest_asyncio
from routing_world import ACCOUNT, Web, csrf_of, web_with_a_lead

from leadflow_crm_api.domain.views import activity_summary
from leadflow_shared.collections import CRM_TIMELINE

pytestmark = [pytest.mark.integration]
on_the_session_loop = pytest.mark.asyncio(loop_scope="session")

BROKER = f"{ACCOUNT}|oak-boss|broker"


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def web(mongo_url: str, kafka_bootstrap: str) -> AsyncIterator[Web]:
    async with web_with_a_lead(mongo_url, kafka_bootstrap) as web:
        yield web


async def answer_of(send: Callable[[], Awaitable[httpx.Response]]) -> httpx.Response | None:
    """The answer; None when the app raised past its error page (the in-process transport re-raises)."""
    try:
        return await send()
    except Exception:  # noqa: BLE001  # Starlette re-raises after sending its 500
        return None


@on_the_session_loop
@pytest.mark.parametrize(
    ("due", "zone"),
    [
        ("9999-12-31T23:30", "America/Los_Angeles"),
        ("0001-01-01T00:30", "Etc/GMT-9"),
        ("3000-01-01T00:00", "UTC"),
        ("1969-12-31T23:59", "UTC"),
    ],
    ids=["year-9999-west-of-utc", "year-1-east-of-utc", "year-3000", "before-1970"],
)
async def test_the_work_form_refuses_a_task_due_beyond_what_leadflow_keeps_by_field_and_publishes_nothing(
    web: Web, due: str, zone: str
) -> None:
    # The Work form's task: `_local_time` makes it `9999-12-31T23:30-08:00`; ActivityCreate took any aware datetime.
    client = await web.site.sign_in(BROKER)
    page = f"/app/accounts/{ACCOUNT}/leads/{web.lead}"
    form = {"csrf": csrf_of(await client.get(page)), "action": "task", "task_title": "Call back", "task_due": due,
            "tz": zone}  # fmt: skip
    before = len(web.sent.records)
    answer = await answer_of(lambda: client.post(f"{page}/actions", data=form))
    published = len(web.sent.records) - before
    assert answer is not None, f"task due {due} in {zone}: a 500 after publishing {published}"
    assert (answer.status_code, published) == (422, 0), f"task due {due} in {zone}: published {published}"
    assert 'id="task_due-error"' in answer.text, "the reason is shown next to the due date"
    assert f'value="{due}"' in answer.text, "the form comes back as it was filled in"


@on_the_session_loop
async def test_the_work_form_takes_a_task_due_in_the_agent_s_zone_and_sums_it_up_in_utc(web: Web) -> None:
    client = await web.site.sign_in(BROKER)
    page = f"/app/accounts/{ACCOUNT}/leads/{web.lead}"
    form = {"csrf": csrf_of(await client.get(page)), "action": "task", "task_title": "Send comps",
            "task_due": "2999-12-31T15:30", "tz": "America/Los_Angeles"}  # fmt: skip
    before = len(web.sent.records)
    answer = await client.post(f"{page}/actions", data=form)
    assert (answer.status_code, len(web.sent.records) - before) == (303, 1), answer.text[:500]
    entry = await web.site.world.db[CRM_TIMELINE].find_one({"lead_id": web.lead, "action": "task"})
    assert entry is not None
    assert entry["summary"] == "task by oak-boss: Send comps, due 2999-12-31 23:30 UTC"


@on_the_session_loop
async def test_the_json_api_refuses_a_task_due_beyond_utc_s_calendar_naming_the_field(web: Web) -> None:
    headers = web.site.auth("oak-boss", "broker")
    body = {"action": "task", "task": {"title": "Call back", "due_at": "9999-12-31T23:30:00-08:00"}}
    before = len(web.sent.records)
    answer = await answer_of(
        lambda: web.site.web.post(f"/v1/accounts/{ACCOUNT}/leads/{web.lead}/activities", json=body, headers=headers)
    )
    published = len(web.sent.records) - before
    assert answer is not None, f"a 500 after publishing {published}"
    assert (answer.status_code, published) == (422, 0)
    assert [p["name"] for p in answer.json()["invalid_params"]] == ["body.task.due_at"], answer.text


def test_a_task_s_summary_never_fails_even_for_a_due_date_without_a_utc_value() -> None:
    # ActivityCreate refuses them; a summary is built before the action is published, so it must not raise.
    due = datetime(9999, 12, 31, 23, 30, tzinfo=ZoneInfo("America/Los_Angeles"))
    summary = activity_summary("task", "ana", {"task": {"title": "Call back", "due_at": due}})
    assert summary == "task by ana: Call back, due 9999-12-31 23:30:00-08:00"


@on_the_session_loop
async def test_a_task_posted_with_a_deeply_nested_time_zone_name_is_read_in_utc_not_a_server_error(web: Web) -> None:
    client = await web.site.sign_in(BROKER)
    page = f"/app/accounts/{ACCOUNT}/leads/{web.lead}"
    form = {"csrf": csrf_of(await client.get(page)), "action": "task", "task_title": "Call back",
            "task_due": "2026-03-08T02:30", "tz": "a/" * 300 + "b"}  # fmt: skip
    answer = await answer_of(lambda: client.post(f"{page}/actions", data=form))
    assert answer is not None, "the Work form's tz raised past the route (a 500)"
    assert answer.status_code == 303, answer.status_code
