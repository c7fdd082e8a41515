"""The account's people (issue 11.4, 11.10): the JSON routes, each one a use case of `use_cases.people`."""

from __future__ import annotations

from fastapi import APIRouter, status

from leadflow_crm_api.domain.people import MAX_DEVICES
from leadflow_crm_api.use_cases import people
from leadflow_crm_api.use_cases.people import BASE

router = APIRouter(tags=["people"])

router.add_api_route(
    f"{BASE}/team",
    people.list_team,
    methods=["GET"],
    description="Agents, admins and staff of the account, by name; search and filter.",
)
router.add_api_route(
    f"{BASE}/staff/{{user_id}}",
    people.get_staff_member,
    methods=["GET"],
    description="An admin's or staff member's record.",
)
router.add_api_route(
    f"{BASE}/staff/{{user_id}}",
    people.put_staff_member,
    methods=["PUT"],
    description=(
        "Add or replace an admin or staff member who is not an agent: the daily digest and team updates "
        "reach them by it (their notification preferences are set apart). Agents keep their agent record."
    ),
)
router.add_api_route(
    f"{BASE}/staff/{{user_id}}", people.delete_staff_member, methods=["DELETE"], status_code=status.HTTP_204_NO_CONTENT
)
router.add_api_route(
    f"{BASE}/users/{{user_id}}/devices/{{device_id}}",
    people.put_device,
    methods=["PUT"],
    description=f"Register one of your devices for push (at most {MAX_DEVICES}); again with a new token to refresh "
    "it. A token the push provider no longer knows is removed by the notifier.",
)
router.add_api_route(
    f"{BASE}/users/{{user_id}}/devices",
    people.list_devices,
    methods=["GET"],
    description="A user's devices registered for push (no tokens).",
)
router.add_api_route(
    f"{BASE}/users/{{user_id}}/devices/{{device_id}}",
    people.delete_device,
    methods=["DELETE"],
    status_code=status.HTTP_204_NO_CONTENT,
)
