"""The account's people: the team list (agents, admins, staff), staff records and push devices (issue 11.4,
11.10): the use cases the JSON routes register (routes/people.py) and the web pages call."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Query, Response, status

from leadflow_crm_api.adapters.settings import AccountSettings
from leadflow_crm_api.deps import Caller, Db, Id, Members
from leadflow_crm_api.domain.people import (
    MAX_DEVICES,
    Device,
    DeviceList,
    DeviceRegistration,
    MemberRole,
    StaffMember,
    StaffRole,
    TeamList,
    member_of_agent,
    member_of_staff,
    team,
)
from leadflow_crm_api.domain.principal import Role
from leadflow_crm_api.errors import Forbidden, InvalidRequest, NotFound

BASE = "/v1/accounts/{account_id}"


def account_people(account_id: Id, caller: Caller, db: Db) -> AccountSettings:
    """The people of the caller's own account."""
    if account_id != caller.account_id:
        raise Forbidden("The token does not grant access to this account.")
    return AccountSettings(db, account_id)


People = Annotated[AccountSettings, Depends(account_people)]


async def list_team(
    people: People,
    caller: Caller,
    q: Annotated[str | None, Query(min_length=1, max_length=100, description="Name or email, any case.")] = None,
    role: MemberRole | None = None,
    status_: Annotated[
        str | None, Query(alias="status", pattern="^(active|onboarding|inactive)$", description="e.g. onboarding")
    ] = None,
) -> TeamList:
    if not caller.sees_whole_account:
        raise Forbidden("The team list is for brokers and admins.")
    members = [member_of_agent(a) for a in await people.agents()] + [member_of_staff(s) for s in await people.staff()]
    return TeamList(items=team(members, q=q, role=role, status=status_))


async def get_staff_member(people: People, caller: Caller, user_id: Id) -> StaffMember:
    _own_or_manager(caller, user_id)
    doc = await people.staff_member(user_id)
    if doc is None:
        raise NotFound("No such staff member in this account.")
    return StaffMember.model_validate({k: v for k, v in doc.items() if k in StaffMember.model_fields})


async def put_staff_member(
    people: People, caller: Caller, members: Members, user_id: Id, body: StaffMember
) -> StaffMember:
    _own_or_manager(caller, user_id)
    if await people.agent(user_id) is not None:
        raise InvalidRequest("user_id: an agent of this account; an agent's details are its agent record.")
    if await people.staff_id_taken(user_id) or await people.agent_elsewhere(user_id):
        # Another tenant's id, staff or agent: never touched (its preferences are keyed by the same id).
        raise NotFound("No such staff member in this account.")
    if not caller.sees_whole_account or (caller.role is Role.ADMIN and user_id == caller.sub):
        # An admin's own record too: an admin removed or demoted meanwhile (another replica's cache, a write already
        # under way) must not give itself back its record or its role (decision 0105; helper 173).
        await _own_record_only(people, user_id, body)
    await people.put_staff_member(user_id, body.model_dump(mode="json"))
    await members.recheck(user_id, people.account_id)  # a role set here holds here from the next request
    return body


async def _own_record_only(people: AccountSettings, user_id: str, body: StaffMember) -> None:
    """Someone who is no broker or admin, or an admin writing its own record, updates the staff record it has,
    never makes one or sets its role: a staff record is what digests and new-lead notices reach and what an admin's
    token holds by, so it is the managers' to give (decisions 0076, 0105)."""
    stored = await people.staff_member(user_id)
    if stored is None:
        raise Forbidden("Brokers and admins add staff members.")
    if stored.get("role", StaffRole.STAFF.value) != body.role.value:
        raise Forbidden("Brokers and admins set a staff member's role.")


async def delete_staff_member(people: People, caller: Caller, members: Members, user_id: Id) -> Response:
    """Remove a staff member and their notification preferences: nothing more reaches them, and an admin's token
    of theirs no longer holds here (decision 0105)."""
    if not caller.sees_whole_account:
        raise Forbidden("Brokers and admins remove staff members.")
    if not await people.delete_staff_member(user_id, by=caller.sub):
        if not await people.staff_id_taken(user_id):
            raise NotFound("No such staff member in this account.")
        # Another office holds a staff record under the id (ids are global), so this office can write none of its
        # own: its removal is the mark alone, and an admin token of that user no longer holds here (decision 0105).
        await people.mark_removed(user_id, by=caller.sub)
    await members.recheck(user_id, people.account_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _own_or_manager(caller: Caller, user_id: str) -> None:
    if user_id != caller.sub and not caller.sees_whole_account:
        raise Forbidden("Brokers and admins manage staff records; others only their own.")


# Push devices: a user registers its own; brokers and admins may list and remove them.


async def put_device(people: People, caller: Caller, user_id: Id, device_id: Id, body: DeviceRegistration) -> Device:
    if user_id != caller.sub:
        raise Forbidden("You register only your own devices.")
    await _reachable(people, user_id)
    known = {d["device_id"] for d in await people.devices(user_id)}
    if device_id not in known and len(known) >= MAX_DEVICES:
        raise InvalidRequest(f"device_id: at most {MAX_DEVICES} devices per user; remove one first.")
    at = datetime.now(UTC).replace(microsecond=0)
    await people.put_device(
        user_id, device_id, {"token": body.token, "platform": body.platform.value, "registered_at": at}
    )
    return Device(device_id=device_id, platform=body.platform, registered_at=at)


async def list_devices(people: People, caller: Caller, user_id: Id) -> DeviceList:
    _own_or_manager(caller, user_id)
    return DeviceList(items=[
        Device(device_id=d["device_id"], platform=d["platform"], registered_at=d["registered_at"])
        for d in await people.devices(user_id)
    ])  # fmt: skip


async def delete_device(people: People, caller: Caller, user_id: Id, device_id: Id) -> Response:
    """Stop pushing to a device (a user's own, or any of the account's as a broker or admin)."""
    _own_or_manager(caller, user_id)
    if not await people.delete_device(user_id, device_id):
        raise NotFound("No such device.")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _reachable(people: AccountSettings, user_id: str) -> None:
    if await people.agent(user_id) is None and await people.staff_member(user_id) is None:
        raise NotFound("No such user in this account: only agents and staff members receive notifications.")
