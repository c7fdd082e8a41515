"""Request dependencies shared by the routes: the caller, the database, scoped data access."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import StringConstraints
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_crm_api.adapters.callers import Callers
from leadflow_crm_api.adapters.leads import ScopedLeads
from leadflow_crm_api.adapters.router_api import RouterApi
from leadflow_crm_api.domain.principal import Principal
from leadflow_crm_api.errors import Unauthenticated
from leadflow_crm_api.settings import CrmApiSettings
from leadflow_crm_api.use_cases.leads import account_leads
from leadflow_shared.kafka import PublishRaw
from leadflow_shared.mongo import Document
from leadflow_shared.service import ServiceRuntime

Id = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
Text = Annotated[str | None, Query(min_length=1, max_length=100)]
# An id in a request body (same characters as the path's `Id`).
IdText = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="Repeat a transfer with the same key to retry it: it is applied once.",
    ),
]

bearer = HTTPBearer(auto_error=False, description="OAuth2 access token (JWT) for the crm-api audience.")


# Dependencies are `async def` even where none awaits: FastAPI runs a plain `def` one in a worker thread,
# a thread hop per request for nothing (issue 14).
async def _principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Principal:
    if credentials is None:
        raise Unauthenticated("A bearer token is required.")
    callers: Callers = request.app.state.callers
    return await callers.of(credentials.credentials)


Caller = Annotated[Principal, Depends(_principal)]


async def _callers(request: Request) -> Callers:
    """Who requests come from (`adapters/callers.py`): told when a use case changes an agent's record."""
    callers: Callers = request.app.state.callers
    return callers


Members = Annotated[Callers, Depends(_callers)]


async def _db(request: Request) -> AsyncDatabase[Document]:
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime.db


Db = Annotated[AsyncDatabase[Document], Depends(_db)]


async def _account_leads(account_id: Id, caller: Caller, db: Db) -> ScopedLeads:
    """The account's leads as the caller may see them (`use_cases.leads.account_leads`)."""
    return account_leads(caller, db, account_id)


AccountLeads = Annotated[ScopedLeads, Depends(_account_leads)]


async def _commands(request: Request) -> PublishRaw:
    """Publishes to leads.commands.v1 (the router's input), keyed by account."""
    publish: PublishRaw = request.app.state.publish_command
    return publish


Commands = Annotated[PublishRaw, Depends(_commands)]


async def _router_api(request: Request) -> RouterApi:
    """The router's internal HTTP API (CRM_API_ROUTER_URL, with CRM_API_ROUTER_TOKEN): routing decisions, the
    dry-run, who is next."""
    settings: CrmApiSettings = request.app.state.runtime.settings
    return RouterApi.of(settings)


Router = Annotated[RouterApi, Depends(_router_api)]


async def _digest_default_hour(request: Request) -> int:
    """The digest hour of an account that set none (CRM_API_DIGEST_DEFAULT_HOUR, the notifier's default)."""
    hour: int = request.app.state.digest_default_hour
    return hour


DigestDefaultHour = Annotated[int, Depends(_digest_default_hour)]
