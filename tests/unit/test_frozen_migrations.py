"""Migrations are frozen (issue 22 item 7): a migration uses SQL, or code copied into
`shared.db.migrate` itself, never today's store, Effects or handlers, so what an old migration
does cannot change when those do."""

from __future__ import annotations

import ast
import inspect
import textwrap
import types

import pytest

from shared.db import migrate
from shared.domain.model import task_name

# Today's statements (the handlers' modules of `shared.db`), Effects, the handlers and the unit of work.
LIVE = ("shared.db.sessions", "shared.db.countdowns", "shared.db.outbox", "shared.db.claims",
        "shared.db.store_actions", "shared.db.redrive", "shared.db.analytics_store",
        "shared.domain.effects", "shared.handlers", "shared.db.unit_of_work")


def _live(module: str) -> bool:
    return module.startswith(LIVE)


def reached(function, seen: set | None = None) -> set[str]:
    """Every module `function` imports or uses through a global of `shared.db.migrate`, following
    the helpers of that module it calls."""
    seen = set() if seen is None else seen
    if function in seen:
        return set()
    seen.add(function)
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            modules.add(node.module or "")
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Name) and node.id in vars(migrate):
            value = vars(migrate)[node.id]
            if isinstance(value, types.ModuleType):
                modules.add(value.__name__)
            elif isinstance(value, types.FunctionType) and value.__module__ == migrate.__name__:
                modules |= reached(value, seen)
            else:
                modules.add(getattr(value, "__module__", None) or "")
    return modules


@pytest.mark.parametrize("migration", migrate.MIGRATIONS, ids=lambda m: f"v{migrate.MIGRATIONS.index(m) + 1}")
def test_no_migration_uses_live_code(migration):
    assert not {m for m in reached(migration) if _live(m)}


def test_the_module_imports_no_live_code():
    tree = ast.parse(inspect.getsource(migrate))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    assert not {m for m in imported if _live(m)}


def test_the_check_sees_a_live_import():
    def probe(conn):
        from shared.db import outbox  # noqa: F401
        from shared.domain.effects import Effects  # noqa: F401

    assert {"shared.db.outbox", "shared.domain.effects"} <= {m for m in reached(probe) if _live(m)}


@pytest.mark.parametrize("key, kind, index, version", [("lightspeed:S-1", "reminder", 0, 1),
                                                       ("lightspeed:é", "deadline", 0, 7)])
def test_v8s_copy_of_the_task_name_is_what_it_was(key, kind, index, version):
    assert migrate._v8_task_name(key, kind, index, version) == task_name(key, kind, index, version)
