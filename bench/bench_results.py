"""What every benchmark records with its figures: the machine, the time, a JSON file."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from leadflow_devstack.stack import Stack


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kb = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "os": platform.platform(),
    }


def save(result: dict[str, Any], *, name: str, out: Path, console: Console) -> Path:
    """Add the machine and the time to `result` and write it to `out/<name>-<time>.json`."""
    result |= {"machine": machine(), "measured_at": datetime.now(UTC).isoformat(timespec="seconds")}
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(result, indent=2))
    console.print(f"written to {path}")
    return path


@contextlib.contextmanager
def embedded_stack(accounts: dict[str, Any] | None = None) -> Iterator[Stack]:
    """A fresh embedded stack (servers, topics, sample data) with `accounts` seeded on top; no
    service runs yet: each benchmark starts the ones it measures. Everything stops on exit."""
    stack = Stack(Path(tempfile.mkdtemp(prefix="leadflow-bench-")))
    try:
        stack.start_infra()
        if accounts is not None:
            config = stack.work_dir / "bench-accounts.json"
            config.write_text(json.dumps(accounts))
            stack.seed(config)
        yield stack
    finally:
        stack.stop()
