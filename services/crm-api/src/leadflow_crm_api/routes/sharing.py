"""Lead sharing (T1) and the invitations it depends on (V4): brokerage to realtor."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["lead sharing"])
