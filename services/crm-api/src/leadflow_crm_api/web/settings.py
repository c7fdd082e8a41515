"""Account settings in the web app (V4): round robin and the roster, approvals, lead sources, the pause
schedule and the routing rules (issue 15). Each form saves one setting through the JSON API's use case
(`use_cases.settings`, `use_cases.rules_and_availability`), which checks it against the account's agents
and groups the same way."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field, ValidationError

from leadflow_crm_api.adapters.router_api import RouterApi
from leadflow_crm_api.adapters.settings import AccountSettings
from leadflow_crm_api.bodies import JSON_BOUNDS
from leadflow_crm_api.domain.principal import Principal
from leadflow_crm_api.domain.routing_info import DryRunAnswer, DryRunLead, DryRunRequest
from leadflow_crm_api.domain.rules_and_availability import RoutingRules, stored_rules
from leadflow_crm_api.domain.settings import LeadSource, LeadSources, PauseSchedule, RoundRobinApproval, RoutingSettings
from leadflow_crm_api.errors import InvalidRequest, NotFound, Unavailable, VersionConflict
from leadflow_crm_api.problems import location_name, reason_of
from leadflow_crm_api.use_cases import next_up as next_up_uc
from leadflow_crm_api.use_cases import routing_info as routing_uc
from leadflow_crm_api.use_cases import rules_and_availability as rules_uc
from leadflow_crm_api.use_cases import settings as settings_uc
from leadflow_crm_api.web.common import (
    PREFIX,
    caller_of,
    checked_form,
    db_of,
    field_errors,
    lines_of,
    path_id,
    redirect,
    render,
    settings_of,
)
from leadflow_crm_api.web.leads import PAGE_ROUTER_TIMEOUT
from leadflow_crm_api.web.rule_summaries import criteria_summary, rules_json, steps_summary
from leadflow_shared.events.commands import DepartedLeads
from leadflow_shared.events.criteria import LeadIntent
from leadflow_shared.json_bodies import NotStrictJson, parse_strict_json
from leadflow_shared.routing_rules import DEFAULT_RULE_ID

router = APIRouter(prefix=PREFIX, include_in_schema=False)
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
VERSION = re.compile(r"[0-9]{1,18}")
SOURCE_NUMBERS = ("race_count", "claim_window_seconds", "referral_fee_percent", "direct_period_seconds")
NEXT_UP_RULES = 20  # the Routing rules section asks the router who is next for this many rules at most (one call each)


async def _page(
    request: Request,
    caller: Principal,
    account_id: str,
    *,
    status: int = 200,
    errors: dict[str, str] | None = None,
    form: str = "",
    values: dict[str, Any] | None = None,
    rules_text: str | None = None,
    tested: DryRunAnswer | None = None,
    test_values: dict[str, str] | None = None,
) -> HTMLResponse:
    account = settings_uc.admin_settings(account_id, caller, db_of(request))
    routing = await settings_uc.get_routing(account)
    rules = await rules_uc.get_routing_rules(await rules_uc.rules_scope(account_id, caller, db_of(request)))
    sources = await settings_uc.get_lead_sources(account)
    pause = await settings_uc.get_pause_schedule(account)
    agents = sorted(
        await account.agents(),
        key=lambda a: routing.roster.index(a["_id"]) if a["_id"] in routing.roster else len(routing.roster),
    )
    source = sources.sources[0].name if sources.sources else None
    next_up, next_notice = await _who_is_next(request, account_id, rules, source)
    return render(
        request,
        "settings.html",
        status=status,
        caller=caller,
        title="Settings",
        account_id=account_id,
        routing=routing,
        sources=sources.sources,
        pause=pause,
        agents=agents,
        errors=errors or {},
        failed=form,
        values=values or {},  # the refused form's fields as posted: it shows them, not the stored setting
        departed=list(DepartedLeads),
        weekdays=WEEKDAYS,
        rules=rules,
        rule_lines=[(r, criteria_summary(r.criteria), steps_summary(r)) for r in rules.rules],
        default_action=steps_summary(rules.default),
        rules_readable=stored_rules(await account.account() or {}).readable,
        rules_text=rules_json(rules) if rules_text is None else rules_text,
        intents=[i.value for i in LeadIntent],
        tested=tested,
        test_values=test_values or {},
        next_up=next_up,
        next_notice=next_notice,
        next_source=source,
        source_rotation=next_up_uc.SOURCE_ROTATION,
    )


async def _who_is_next(
    request: Request, account_id: str, rules: RoutingRules, source: str | None
) -> tuple[dict[str, next_up_uc.RuleNextUp], str | None]:
    """Who is next for each enabled rule (the first `NEXT_UP_RULES`) and the default rule, for the lead source
    `source` (rules that rotate over its agents); a router down or slow is a notice (the page still shows)."""
    enabled = [r.id for r in rules.rules if r.enabled]
    asked = [*enabled[:NEXT_UP_RULES], DEFAULT_RULE_ID]
    router_api = RouterApi.of(settings_of(request), timeout=PAGE_ROUTER_TIMEOUT)
    found, failed = await next_up_uc.next_per_rule(router_api, db_of(request), account_id, asked, source)
    notices = [f"Who is next cannot be shown now: {failed}"] if failed else []
    if len(enabled) > NEXT_UP_RULES:
        notices.append(f"Who is next is shown for the first {NEXT_UP_RULES} enabled rules and the default rule.")
    return found, " ".join(notices) or None


@router.get("/accounts/{account_id}/settings")
async def settings_page(request: Request, account_id: str) -> HTMLResponse:
    caller, _ = await caller_of(request)
    return await _page(request, caller, path_id(account_id))


async def _save(request: Request, account_id: str, form_name: str, save: Any) -> Response:
    """Check the form's token, run `save(account_settings, fields)`; the page again with errors, or saved."""
    caller, token = await caller_of(request)
    account_id = path_id(account_id)
    fields = await checked_form(request, token)
    account = settings_uc.admin_settings(account_id, caller, db_of(request))
    try:
        said = await save(account, fields)
    except (ValidationError, RequestValidationError) as exc:
        posted = fields | {"weekdays": (await request.form()).getlist("weekdays")}  # shown again as it was sent
        errors = field_errors(exc, f"{form_name}.")
        return await _page(request, caller, account_id, status=422, errors=errors, form=form_name, values=posted)
    return redirect(
        f"{PREFIX}/accounts/{account_id}/settings",
        request=request,
        flash=f"{said} The next leads are routed with it within a few seconds.",
    )


@router.post("/accounts/{account_id}/settings/routing")
async def save_routing(request: Request, account_id: str) -> Response:
    async def save(account: AccountSettings, fields: dict[str, str]) -> str:
        roster = lines_of(fields.get("roster", ""))
        body = RoutingSettings(
            round_robin=fields.get("round_robin") == "on",
            roster=roster,
            departed_agent_leads=fields.get("departed_agent_leads") or DepartedLeads.UNASSIGNED,
            allow_direct_to_user=fields.get("allow_direct_to_user") == "on",
        )
        await settings_uc.put_routing(account, body)
        return "Round robin " + ("on." if body.round_robin else "off: roster position 1 gets new general leads.")

    return await _save(request, account_id, "routing", save)


@router.post("/accounts/{account_id}/settings/approvals/{agent_id}")
async def save_approval(request: Request, account_id: str, agent_id: str) -> Response:
    agent_id = path_id(agent_id)

    async def save(account: AccountSettings, fields: dict[str, str]) -> str:
        approved = fields.get("approved") == "on"
        await settings_uc.put_round_robin(account, agent_id, RoundRobinApproval(approved=approved))
        return f"{agent_id} is {'approved' if approved else 'no longer approved'} for round robin."

    return await _save(request, account_id, "approvals", save)


@router.post("/accounts/{account_id}/settings/sources/{index}")
async def save_source(request: Request, account_id: str, index: int) -> Response:
    async def save(account: AccountSettings, fields: dict[str, str]) -> str:
        current = (await settings_uc.get_lead_sources(account)).sources
        if not 0 <= index < len(current):
            raise NotFound("No such lead source.")
        values: dict[str, Any] = {k: fields.get(k, "").strip() for k in SOURCE_NUMBERS}
        values = {k: v for k, v in values.items() if v}
        edited = LeadSource.model_validate(current[index].model_dump() | values | {
            "lead_group": fields.get("lead_group", "").strip() or None,
            "offices": lines_of(fields.get("offices", "")),  # one per line: a name may hold a comma
            "auto_accept": fields.get("auto_accept") == "on",
        })  # fmt: skip
        sources = [*current[:index], edited, *current[index + 1 :]]
        try:
            await settings_uc.put_lead_sources(account, LeadSources(sources=sources))
        except RequestValidationError as exc:  # the account's checks name `sources.<i>.<field>`: this form's field
            raise RequestValidationError([_of_source(e, index) for e in exc.errors()]) from exc
        return f"Lead source {edited.name} saved."

    return await _save(request, account_id, f"source{index}", save)


def _of_source(error: Any, index: int) -> Any:
    """A refusal of the account's sources located at source `index`'s field, as that field's own (shown beside
    it); any other, as it is (shown under the lead group)."""
    where = [p for p in error["loc"] if p != "body"]
    if len(where) > 2 and where[0] == "sources" and where[1] == index:
        return {**error, "loc": tuple(where[2:])}
    return error


class _Removal(BaseModel):
    """The pause form's `remove`: the position of the window to remove."""

    remove: int = Field(ge=0, lt=1000)


@router.post("/accounts/{account_id}/settings/pause")
async def save_pause(request: Request, account_id: str) -> Response:
    """Add a window, remove one (`remove` = its position), or change the time zone; the schedule is then
    saved whole through the API's use case, which checks it."""

    async def save(account: AccountSettings, fields: dict[str, str]) -> str:
        current = await settings_uc.get_pause_schedule(account)
        windows: list[dict[str, Any]] = [w.model_dump() for w in current.windows]
        if fields.get("remove"):
            # A position is what pydantic reads as one: "²" passes str.isdigit() and fails int() (helper 122).
            remove = _Removal.model_validate({"remove": fields["remove"]}).remove
            windows = [w for i, w in enumerate(windows) if i != remove]
            said = "Pause window removed."
        elif fields.get("start") or fields.get("end"):
            form = await request.form()
            days = [d for d in form.getlist("weekdays") if isinstance(d, str)]  # the schedule's model reads them
            windows.append({"weekdays": days, "start": fields.get("start", ""), "end": fields.get("end", "")})
            said = "Pause window added."
        else:
            said = "Time zone saved."
        body = PauseSchedule.model_validate({"time_zone": fields.get("time_zone") or None, "windows": windows})
        await settings_uc.put_pause_schedule(account, body)
        return said

    return await _save(request, account_id, "pause", save)


def _rule_set(text: str, version: str) -> RoutingRules:
    """The text area's rule set; the form's `version` when the JSON gives none."""
    document = parse_strict_json(text.encode("utf-8", "surrogatepass"), JSON_BOUNDS)
    if isinstance(document, dict) and "version" not in document and VERSION.fullmatch(version):
        document["version"] = int(version)
    return RoutingRules.model_validate(document)


def _rule_errors(exc: ValidationError | RequestValidationError) -> str:
    """Every refusal with its place in the rule set (`rules.0.action.agent_id: ...`), not only the first field's."""
    said = [(location_name([p for p in e["loc"] if p != "body"]) or "rule set", reason_of(e)) for e in exc.errors()]
    return "; ".join(f"{where}: {reason}" for where, reason in said[:10])


@router.post("/accounts/{account_id}/settings/routing-rules")
async def save_routing_rules(request: Request, account_id: str) -> Response:
    """Save the rule set as the JSON API does (its version checked, its agents on the roster); refused, the page
    again with the reason and the text as it was sent, so nothing typed is lost."""
    caller, token = await caller_of(request)
    account_id = path_id(account_id)
    fields = await checked_form(request, token)
    scope = await rules_uc.rules_scope(account_id, caller, db_of(request))
    text = fields.get("rules", "")
    try:
        saved = await rules_uc.put_routing_rules(scope, _rule_set(text, fields.get("version", "")))
    except NotStrictJson as exc:
        status, refused = 422, _json_refusal(exc)
    except (ValidationError, RequestValidationError) as exc:
        status, refused = 422, _rule_errors(exc)
    except VersionConflict as exc:
        status, refused = 409, exc.detail
    else:
        flash = f"Routing rules saved as version {saved.version}. The next leads are routed with them within seconds."
        return redirect(f"{PREFIX}/accounts/{account_id}/settings", request=request, flash=flash)
    errors = {"rules.rules": refused}
    return await _page(request, caller, account_id, status=status, errors=errors, form="rules", rules_text=text)


# "Test a lead" (issue 15, item 7): the dry-run of the JSON API, from the routing rules form's fields

# Where a refusal of the lead is shown: the longest matching location wins.
TEST_FIELDS = {
    ("source",): "test_source",
    ("criteria", "intent"): "test_intent",
    ("criteria", "price"): "test_price_min",
    ("criteria", "price", "max"): "test_price_max",
    ("criteria", "place"): "test_city",
    ("criteria", "tags"): "test_tags",
}


def _test_lead(fields: dict[str, str]) -> DryRunLead:
    """The form's few fields as a website form's lead: source, intent, price range, city, tags."""
    criteria: dict[str, Any] = {"tags": lines_of(fields.get("test_tags", ""))}  # one per line: a tag may hold a comma
    if intent := fields.get("test_intent", ""):
        criteria["intent"] = intent
    price = {end: fields.get(f"test_price_{end}", "").strip().replace(",", "").lstrip("$") for end in ("min", "max")}
    if price := {end: value for end, value in price.items() if value}:
        criteria["price"] = price
    if city := fields.get("test_city", "").strip():
        criteria["place"] = {"city": city}
    return DryRunLead.model_validate(
        {"first_name": "Test", "source": fields.get("test_source", "").strip() or "Website", "criteria": criteria}
    )


def _test_errors(exc: ValidationError | RequestValidationError) -> dict[str, str]:
    """The refusals by form field: the draft's beside the text area, the lead's beside its field."""
    errors: dict[str, str] = {}
    for error in exc.errors():
        where = tuple(p for p in error["loc"] if p not in {"body", "lead"})
        if where[:1] == ("rules",):
            name = "rules.rules"
            reason = f"{location_name(list(where[1:])) or 'rule set'}: {reason_of(error)}"
        else:
            key = next((k for k in sorted(TEST_FIELDS, key=len, reverse=True) if where[: len(k)] == k), ("source",))
            name, reason = f"test.{TEST_FIELDS[key]}", reason_of(error)
        errors.setdefault(name, reason)
    return errors


def _json_refusal(exc: NotStrictJson) -> str:
    return "; ".join(f"{location_name(v.loc) or 'rule set'}: {v.reason}" for v in exc.violations)


@router.post("/accounts/{account_id}/settings/routing-rules/dry-run")
async def test_a_lead(request: Request, account_id: str) -> Response:
    """How a lead with the form's fields would be routed now by the saved rules or the draft in the text area,
    changing nothing; the page again with the decision (or why not), the text area as it was sent."""
    caller, token = await caller_of(request)
    account_id = path_id(account_id)
    fields = await checked_form(request, token)
    text, status, errors, tested = fields.get("rules", ""), 200, {}, None
    try:
        draft = _rule_set(text, "0") if fields.get("test_use") == "draft" else None
    except NotStrictJson as exc:
        status, errors, draft = 422, {"rules.rules": _json_refusal(exc)}, None
    except ValidationError as exc:
        status, errors, draft = 422, {"rules.rules": _rule_errors(exc)}, None
    if not errors:
        status, errors, tested = await _tested(request, caller, account_id, fields, draft)
    return await _page(
        request, caller, account_id, status=status, errors=errors, form="test", rules_text=text,
        tested=tested, test_values=fields,
    )  # fmt: skip


async def _tested(
    request: Request, caller: Principal, account_id: str, fields: dict[str, str], draft: RoutingRules | None
) -> tuple[int, dict[str, str], DryRunAnswer | None]:
    """The dry-run's answer, or the status and the refusals by form field."""
    router_api = RouterApi.of(settings_of(request))
    try:
        body = DryRunRequest(lead=_test_lead(fields), rules=draft)
        return 200, {}, await routing_uc.dry_run(account_id, caller, db_of(request), router_api, body)
    except (ValidationError, RequestValidationError) as exc:
        return 422, _test_errors(exc), None
    except (Unavailable, NotFound, InvalidRequest) as exc:  # the router down, or refusing: said beside the form
        return exc.status, {"test.answer": exc.detail}, None
