"""`leadflow-ops` with a test's OPS_* settings: as the console script an operator runs, or in the test's process.

The console script costs a Python start and leadflow's imports per command (5-7 s each while the suite's other worker
runs a stack: 20 commands made `test_dlq_fidelity`'s property test 137 s). In the process, the same `cli.run` the
script's `main` calls reads the same settings and prints the same output; what only the script does (the exit status
from `sys.exit`, logging set to the quiet level) is shown by the tests that run it as the script.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

from leadflow_ops import cli

SCRIPT = str(Path(sys.executable).parent / "leadflow-ops")


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def ops_env(bootstrap: str, mongo_url: str, database: str) -> dict[str, str]:
    """This process's environment without its OPS_* variables, and the test's servers and database."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("OPS_")}
    return env | {"OPS_KAFKA__BOOTSTRAP_SERVERS": bootstrap, "OPS_KAFKA__PRODUCER_IDEMPOTENCE": "false",
                  "OPS_MONGO__URL": mongo_url, "OPS_MONGO__DATABASE": database}  # fmt: skip


def run_script(env: dict[str, str], *args: str) -> Result:
    done = subprocess.run([SCRIPT, *args], env=env, capture_output=True, text=True, timeout=90, check=False)
    return Result(done.returncode, done.stdout, done.stderr)


def run_in_process(env: dict[str, str], *args: str) -> Result:
    """`cli.run` with `env` as the environment and its output captured; not in a running event loop (it runs its
    own: from async code, call it with `asyncio.to_thread`)."""
    out, err = io.StringIO(), io.StringIO()
    with mock.patch.dict(os.environ, env, clear=True), redirect_stdout(out), redirect_stderr(err):
        code = cli.run(cli.parser().parse_args(list(args)))
    return Result(code, out.getvalue(), err.getvalue())
