"""Errors shared by every service's domain, free of any framework import."""

from __future__ import annotations


class PoisonMessage(Exception):  # noqa: N818 (a kind of message, not an error state)
    """Input that can never be processed, whatever the retry: dead-letter it now."""
