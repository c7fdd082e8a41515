"""Fakes more than one service's tests use: a clock the test sets.

Imported by unit and integration tests alike (pyproject puts tests/unit on pytest's sys.path; it holds no tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass
class Clock:
    """What a service's `clock` argument calls; the test moves `now`."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += timedelta(milliseconds=ms)

    @property
    def ms(self) -> int:
        return int(self.now.timestamp() * 1000)
