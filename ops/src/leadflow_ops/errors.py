"""What a command reports to the operator instead of a traceback."""

from __future__ import annotations


class OpsError(Exception):
    """A command cannot go on; the message says why, for the operator (no personal data)."""
