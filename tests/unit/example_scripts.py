"""The examples under examples/ (a webhook sender, a partner producer), loaded for the tests that run them.

Imported by the test modules (pyproject puts this folder on pytest's sys.path; it holds no tests).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(path: str) -> ModuleType:
    """examples/`path` as a module: a stand-alone script, not a package of this workspace, so loaded from its file."""
    spec = importlib.util.spec_from_file_location(Path(path).stem, EXAMPLES / path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
