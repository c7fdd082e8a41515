#!/usr/bin/env python3
"""leadflow's two commands, on any machine with Python 3.11+ and access to PyPI.

    python3 dev.py run    start leadflow with embedded Kafka, MongoDB and SMTP, feed sample leads
    python3 dev.py test   lint (ruff check and format), the duplicate-code check (pylint), type-check
                          (mypy --strict) and run every test (pytest); the browser tests use Debian's
                          Chromium, installed here when run as root

It installs uv from PyPI into .tools/ when uv is not on PATH, then installs the locked
workspace (uv.lock) into .venv/ and runs the command there. Extra arguments are passed on.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import venv
from collections.abc import MutableMapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent
UV_VERSION = "0.13.8"
TOOLS = ROOT / ".tools"
BYTECODE = ROOT / ".cache" / "pycache"
PACKAGES = [
    "leadflow_shared",
    "leadflow_intake",
    "leadflow_router",
    "leadflow_notifier",
    "leadflow_crm_api",
    "leadflow_devstack",
    "leadflow_ops",
]
# The whole tree's Python, for the duplicate-code check (decision 0051).
DUPLICATE_CHECKED = [
    *(str(p.relative_to(ROOT)) for p in sorted(ROOT.glob("services/*/src"))),
    "shared/src",
    "devstack/src",
    "ops/src",
    "tests",
    "bench",
]


def uv() -> str:
    if found := shutil.which("uv"):
        return found
    bin_dir = TOOLS / ("Scripts" if os.name == "nt" else "bin")
    local = bin_dir / "uv"
    if not local.exists():
        print(f"installing uv {UV_VERSION} from PyPI into {TOOLS} ...", flush=True)
        venv.create(TOOLS, with_pip=True)
        subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "--quiet", f"uv=={UV_VERSION}"], check=True)
    return str(local)


def bytecode_cache(environ: MutableMapping[str, str]) -> None:
    """Compiled modules kept in one cache of this checkout (decision 0078): the tests start a few hundred
    service processes, and a machine that sets PYTHONDONTWRITEBYTECODE would have each compile every module
    it imports again (two to three CPU seconds per service here). The cache lies outside the source tree,
    which is what that setting usually protects; one set by the caller is kept."""
    environ.pop("PYTHONDONTWRITEBYTECODE", None)
    environ.setdefault("PYTHONPYCACHEPREFIX", str(BYTECODE))


def in_env(uv_bin: str, *argv: str) -> int:
    """Run `argv` in the locked workspace environment; returns its exit status.

    On Ctrl-C the command is given time to stop cleanly: a terminal signals it too, but a
    parent that signals only this process (e.g. `timeout -s INT`) does not, so pass it on.
    """
    child = subprocess.Popen([uv_bin, "run", "--locked", "--all-packages", *argv], cwd=ROOT)
    while True:
        try:
            return child.wait()
        except KeyboardInterrupt:
            child.send_signal(signal.SIGINT)


# Tools the tests need beyond Python: (environment variable, binaries, Debian package, what for).
TEST_TOOLS = [
    ("LEADFLOW_CHROMIUM", ("chromium", "chromium-browser"), "chromium", "the browser tests"),
    ("LEADFLOW_PROMTOOL", ("promtool",), "prometheus", "the alert rule tests (promtool)"),
    ("LEADFLOW_KUBECTL", ("kubectl",), "kubernetes-client", "the Kubernetes manifest tests (kubectl kustomize)"),
]


def debian_tool(variable: str, binaries: tuple[str, ...], package: str, purpose: str) -> str | None:
    """A tool the tests need: found on PATH, or installed from Debian's packages when this runs as
    root on Debian or Ubuntu (never a download of its own). None, after saying what to do, otherwise."""
    for name in binaries:
        if found := shutil.which(name):
            return found
    apt = shutil.which("apt-get")
    if apt and hasattr(os, "geteuid") and os.geteuid() == 0:
        print(f"==> installing Debian's {package} for {purpose}", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for step in (["update", "-q"], ["install", "-y", "-q", "--no-install-recommends", package]):
            subprocess.run([apt, *step], check=True, env=env, stdout=subprocess.DEVNULL)
        return next(filter(None, map(shutil.which, binaries)), None)
    print(
        f"{purpose} need {binaries[0]}: install it (Debian/Ubuntu: sudo apt-get install {package}) "
        f"or set {variable} to its path"
    )
    return None


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"run", "test"}:
        print(__doc__)
        return 2
    if sys.version_info < (3, 11):
        print("leadflow needs Python 3.11 or newer")
        return 2
    os.environ.setdefault("UV_PYTHON", sys.executable)  # the interpreter running this script
    bytecode_cache(os.environ)
    uv_bin = uv()
    subprocess.run([uv_bin, "sync", "--locked", "--all-packages"], cwd=ROOT, check=True)
    command, rest = argv[0], argv[1:]
    if command == "run":
        return in_env(uv_bin, "leadflow-dev", *rest)
    for variable, binaries, package, purpose in TEST_TOOLS:
        if not os.environ.get(variable):
            if (found := debian_tool(variable, binaries, package, purpose)) is None:
                return 1
            os.environ[variable] = found
    steps = [
        ("ruff", ["ruff", "check", "."]),
        ("ruff format", ["ruff", "format", "--check", "."]),
        ("duplicate code", ["pylint", *DUPLICATE_CHECKED]),  # settings: pyproject's [tool.pylint.*]
        ("mypy", ["mypy", *(f"-p={p}" for p in PACKAGES)]),
        ("mypy tests and bench", ["mypy", "tests", "bench"]),
        # Two workers (decision 0065): a file's tests stay on one worker (its module fixtures, its order); files are
        # handed out in collection order, e2e first and the short unit files last, so the workers finish together
        # (xdist's default order, most tests first, left the one-test e2e files, the longest, for the end); options
        # after `test` come later and win (`-n 0` runs in one process).
        ("pytest", ["pytest", "-n", "2", "--dist", "loadfile", "--no-loadscope-reorder", *rest]),
    ]
    for name, step in steps:
        print(f"==> {name}", flush=True)
        if (status := in_env(uv_bin, *step)) != 0:
            print(f"{name} failed (exit status {status})")
            return status
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
