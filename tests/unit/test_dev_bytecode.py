"""`dev.py` keeps compiled modules in one cache of the checkout, whatever PYTHONDONTWRITEBYTECODE says
(decision 0078): the tests start a few hundred service processes, each importing the same modules."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def dev_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("leadflow_dev_script", ROOT / "dev.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bytecode_goes_to_the_checkouts_cache_even_where_writing_it_was_turned_off() -> None:
    dev = dev_module()
    environ = {"PYTHONDONTWRITEBYTECODE": "1", "PATH": "/usr/bin"}
    dev.bytecode_cache(environ)
    assert environ == {"PYTHONPYCACHEPREFIX": str(ROOT / ".cache" / "pycache"), "PATH": "/usr/bin"}
    assert ".cache/" in (ROOT / ".gitignore").read_text().splitlines(), "the cache is never committed"


def test_a_cache_the_caller_chose_is_kept() -> None:
    environ = {"PYTHONPYCACHEPREFIX": "/elsewhere"}
    dev_module().bytecode_cache(environ)
    assert environ == {"PYTHONPYCACHEPREFIX": "/elsewhere"}


def test_a_process_started_with_that_environment_writes_and_reads_the_cache(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "some_module.py").write_text("VALUE = 42\n")
    environ = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": str(tmp_path / "cache")}
    dev_module().bytecode_cache(environ)
    command = [sys.executable, "-c", "import some_module; assert some_module.VALUE == 42"]
    subprocess.run(command, cwd=tmp_path / "src", env=environ, check=True)
    compiled = list((tmp_path / "cache").rglob("some_module.*.pyc"))
    assert len(compiled) == 1, "compiled once, into the cache"
    assert not (tmp_path / "src" / "__pycache__").exists(), "nothing written beside the sources"
