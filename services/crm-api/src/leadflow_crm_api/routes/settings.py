"""Account settings (V4) read by the router and the notifier."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["settings"])
