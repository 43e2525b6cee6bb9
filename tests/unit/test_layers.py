"""Imports go down the layers: adapters implement `shared.ports`, and never reach up into the
emails, handlers or console that use them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package.replace(".", "/")).rglob("*.py"))


@pytest.mark.parametrize("path", _modules("shared.adapters"), ids=lambda p: p.name)
def test_an_adapter_never_imports_upward(path):
    upward = ("shared.emails", "shared.handlers", "shared.console", "shared.bootstrap")
    assert not {m for m in _imports(path) if m.startswith(upward)}


def test_the_ports_and_the_emails_need_no_adapter():
    for path in [ROOT / "shared/ports.py", *_modules("shared.emails")]:
        assert not {m for m in _imports(path) if m.startswith("shared.adapters")}, path.name
