"""docs/rules.md and docs/architecture.md point at code and tests: every pointer must lead somewhere.

A rule whose proof was renamed or deleted would otherwise keep citing a test that no longer runs.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ("docs/rules.md", "docs/architecture.md")
# The pages shorten source paths (rules.md says how).
SOURCE_ROOTS = {
    "router": "services/router/src/leadflow_router",
    "intake": "services/intake/src/leadflow_intake",
    "notifier": "services/notifier/src/leadflow_notifier",
    "crm-api": "services/crm-api/src/leadflow_crm_api",
    "shared": "shared/src/leadflow_shared",
}
# `unit/test_x.py::test_y`, `unit/test_x.py`, or `::test_y` (the file last named before it).
TEST_POINTER = re.compile(r"`((?:unit|integration|e2e)/[\w/]+\.py)?(?:::(\w+))?`")
SOURCE_POINTER = re.compile(r"`((?:router|intake|notifier|crm-api|shared)/[\w/.-]+\.py)`")


@cache
def functions_in(path: Path) -> frozenset[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef)
    return frozenset(node.name for node in ast.walk(tree) if isinstance(node, kinds))


def broken_test_pointers(text: str) -> list[str]:
    broken: list[str] = []
    current: str | None = None
    for match in TEST_POINTER.finditer(text):
        file, function = match.groups()
        if file is None and function is None:
            continue
        current = file or current
        if current is None:
            broken.append(f"::{function} with no file named before it")
            continue
        path = ROOT / "tests" / current
        if not path.is_file():
            broken.append(current)
        elif function is not None and function not in functions_in(path):
            broken.append(f"{current}::{function}")
    return broken


def broken_source_pointers(text: str) -> list[str]:
    broken = []
    for match in SOURCE_POINTER.finditer(text):
        service, _, rest = match.group(1).partition("/")
        if not (ROOT / SOURCE_ROOTS[service] / rest).is_file():
            broken.append(match.group(1))
    return broken


@pytest.mark.parametrize("doc", DOCS)
def test_every_test_a_page_cites_exists(doc: str) -> None:
    assert broken_test_pointers((ROOT / doc).read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("doc", DOCS)
def test_every_source_file_a_page_cites_exists(doc: str) -> None:
    assert broken_source_pointers((ROOT / doc).read_text(encoding="utf-8")) == []


def test_a_renamed_test_or_file_is_reported() -> None:
    # The checks must be able to fail: a made-up test, file and module are each caught.
    text = (
        "`unit/test_docs_references.py::test_a_renamed_test_or_file_is_reported`, `::no_such_test`; "
        "`unit/no_such_file.py`; `router/no_such_module.py`, `router/handlers.py`"
    )
    assert broken_test_pointers(text) == ["unit/test_docs_references.py::no_such_test", "unit/no_such_file.py"]
    assert broken_source_pointers(text) == ["router/no_such_module.py"]
