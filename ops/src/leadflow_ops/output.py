"""Writing results: lines for a person, or one JSON document (`--json`) for a script."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def printable(text: str) -> str:
    """`text` safe for a terminal: control characters (escape sequences a sender chose) as \\x.. escapes."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def line(text: str = "") -> None:
    sys.stdout.write(text + "\n")


async def document(text: str, out: Path | None) -> None:
    """A generated document (`--out FILE`): written to the file, or printed."""
    if out is None:
        line(text.rstrip("\n"))
    else:
        await asyncio.to_thread(out.write_text, text, encoding="utf-8")


def note(text: str) -> None:
    """A remark beside the results (counts, warnings), on stderr: stdout stays one line per item."""
    sys.stderr.write(text + "\n")


_SURROGATE = re.compile("[\ud800-\udfff]")


def json_text(data: Any, *, indent: int = 2) -> str:
    """`data` as JSON text that UTF-8 can hold: a lone surrogate (a header name that is not UTF-8, as the tolerant
    reader keeps it, a `\\udcff` in a body) is written as its `\\uXXXX` escape, which reads back as the same."""
    text = json.dumps(data, indent=indent, ensure_ascii=False, default=str)
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def as_json(data: Any) -> None:
    sys.stdout.write(json_text(data) + "\n")


def iso(at: object) -> str:
    """A stored time as the commands print times: UTC, to the second, with Z; "?" if it is none."""
    if not isinstance(at, datetime):
        return "?"
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
