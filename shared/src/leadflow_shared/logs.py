"""Logging setup: one JSON object per line on stderr, ids as fields, never personal data.

Every record carries `service`; a call site's `extra={...}` (event_id, lead_id, account_id,
topic, channel...) becomes top-level fields, and so do the fields bound for the message being
handled (`bind`: the consumer's topic, partition and offset) and the current trace's ids when
tracing is on. Messages and fields hold ids, counts and error types, never names, emails,
phones or message text: a test posts a lead and searches every log for them.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
from collections.abc import Iterator
from typing import Any, Literal

import faststream  # noqa: F401 (creates FastStream's logger, which configure_logging then takes over)
from aiokafka.errors import CommitFailedError
from opentelemetry import trace
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["json", "text"]

_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(service)s] %(message)s"
_bound: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("leadflow_log_fields", default=None)


@contextlib.contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Add `fields` to every record logged inside the block (this task and the ones it starts)."""
    token = _bound.set({**(_bound.get() or {}), **fields})
    try:
        yield
    finally:
        _bound.reset(token)


class _ContextFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        for name, value in (_bound.get() or {}).items():
            if not hasattr(record, name):  # the call site's own extra wins
                setattr(record, name, value)
        trace = _trace_ids()
        if trace is not None:
            record.trace_id, record.span_id = trace
        return True


class _RoutineRebalance(logging.Filter):
    """A commit refused because the group rebalanced meanwhile (a replica came or went) is routine:
    the consumer rejoins and the records come again, which the handlers absorb by event id. aiokafka
    logs it at ERROR and FastStream's acknowledgement middleware at CRITICAL with a traceback; both
    become one WARNING line, so an alert on errors means something is wrong. So does a consumer's session
    that expired (no heartbeat answered within the session timeout: a starved host, a broker slow to answer):
    the group hands its partitions to the others, as for a crashed replica, and it rejoins at once."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _is_rebalance_commit(record):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info = record.exc_text = None
            record.msg, record.args = "offset commit refused by a rebalance; the records come again", ()
        elif _is_session_expiry(record):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg, record.args = "consumer session expired (no heartbeat answered in time); rejoining", ()
        return True


def _is_session_expiry(record: logging.LogRecord) -> bool:
    return (
        record.levelno >= logging.ERROR
        and record.name == "aiokafka.consumer.group_coordinator"
        and record.getMessage().startswith("Heartbeat session expired")
    )


def _is_rebalance_commit(record: logging.LogRecord) -> bool:
    if record.levelno < logging.ERROR:
        return False
    if record.name == "aiokafka.consumer.group_coordinator":
        message = record.getMessage()
        return message.startswith("OffsetCommit failed") and (
            "IllegalGeneration" in message or "RebalanceInProgress" in message
        )
    error = record.exc_info[1] if record.exc_info else None
    return record.name.startswith("faststream") and isinstance(error, CommitFailedError)


def _trace_ids() -> tuple[str, str] | None:
    """The active OpenTelemetry span's ids (none while tracing is off)."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def configure_logging(service: str, level: str = "INFO", fmt: LogFormat = "json") -> None:
    """Send every record to stderr as JSON (or text for a person at a terminal); safe to call twice."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "{levelname}{name}{message}",
                style="{",
                timestamp="time",  # ISO 8601 in UTC, to the microsecond
                rename_fields={"levelname": "level", "name": "logger"},
                # uvicorn repeats its message with terminal colour codes in `color_message`.
                reserved_attrs=[*RESERVED_ATTRS, "color_message"],
                json_ensure_ascii=False,
            )
        )
    else:
        handler.setFormatter(logging.Formatter(_TEXT_FORMAT))
    handler.addFilter(_ContextFilter(service))
    handler.addFilter(_RoutineRebalance())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # FastStream gives its logger a coloured text handler that does not propagate: route it here.
    faststream_logger = logging.getLogger("faststream")
    faststream_logger.handlers.clear()
    faststream_logger.propagate = True
    # aiokafka logs every retriable connection error at ERROR; one line at WARNING is enough.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
