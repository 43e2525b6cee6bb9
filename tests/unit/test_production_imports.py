"""Production never imports dev code (issue 22 item 6): what Cloud Functions runs is `main.py`,
`functions/` and `shared/`; none of it may import `devstack`, `tests` or `bench`, which
`.gcloudignore` leaves out of the upload."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEV_ONLY = ("devstack", "tests", "bench")
PRODUCTION = sorted([ROOT / "main.py", *(ROOT / "functions").rglob("*.py"), *(ROOT / "shared").rglob("*.py")])


def imported(path: Path) -> set[str]:
    """Every module `path` imports, anywhere in it (function bodies included); a relative
    import counts as the package it names."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            names.add(node.module or "" if node.level == 0 else f".{node.module or ''}")
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif (isinstance(node, ast.Call) and isinstance(node.func, (ast.Attribute, ast.Name))
              and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("import_module", "__import__")
              and node.args and isinstance(node.args[0], (ast.Constant, ast.JoinedStr))):
            first = node.args[0]
            names.add(first.value if isinstance(first, ast.Constant) else ast.unparse(first)[2:-1])
    return names


@pytest.mark.parametrize("path", PRODUCTION, ids=lambda p: str(p.relative_to(ROOT)))
def test_production_never_imports_dev_code(path):
    assert not {m for m in imported(path) if m.split(".")[0] in DEV_ONLY}


def test_the_walk_sees_imports_in_function_bodies():
    probe = ROOT / "shared" / "bootstrap.py"
    assert "shared.providers.registry" in imported(probe) and len(PRODUCTION) > 50
    assert "functions.{name}" in imported(ROOT / "main.py")


def test_the_upload_leaves_out_dev_code():
    ignored = {line.strip() for line in (ROOT / ".gcloudignore").read_text().splitlines()}
    assert {f"{name}/" for name in DEV_ONLY} <= ignored
