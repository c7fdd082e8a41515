"""Child processes that never outlive their parent, and waiting on ports with a deadline."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _die_with_parent() -> None:  # pragma: no cover (runs in the child before exec)
    # Linux: the kernel sends SIGTERM to the child if its parent dies, even by SIGKILL,
    # so an interrupted run never leaves a broker or service behind.
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def wait_for_port(port: int, *, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process {process.args!r} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout}s")


class ManagedProcess:
    """A child process logging to a file, stopped with SIGTERM then SIGKILL."""

    def __init__(self, name: str, argv: Sequence[str], *, log_dir: Path, env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_dir / f"{name}.log"
        self._env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self.log_start = 0  # where this run's lines begin in the log (a restarted process appends to it)

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.log_start = log.tell()
            self.process = subprocess.Popen(  # noqa: S603 (argv built by this package, no shell)
                self.argv, stdout=log, stderr=subprocess.STDOUT, env=self._env, preexec_fn=_die_with_parent
            )

    def logged(self, text: str) -> bool:
        """Whether this run of the process has logged a line holding `text`."""
        with self.log_path.open("rb") as log:
            log.seek(self.log_start)
            return text.encode() in log.read()

    @property
    def pid(self) -> int:
        assert self.process is not None  # noqa: S101
        return self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: the crash a reliability test needs."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait for a graceful exit, SIGKILL past `timeout`; returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode
