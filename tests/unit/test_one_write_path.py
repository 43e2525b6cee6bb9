"""One way to write, one place that relays (issue 22, item 1).

Every production module outside `shared/db/` (`shared/`, `functions/`, `main.py`) writes through
`UnitOfWork` (`shared/db/unit_of_work.py`), the order webhook's one-statement fast path included
(`UnitOfWork.place_order`): none calls the database's own ways to run a statement
(`Database.atomic`, `run_prepared`, `transaction`) nor tells the dispatcher which orders a write
committed (the unit of work reports them itself). Reads stay `db.read()`.

Relaying is decided in one place, the dispatcher (`shared/bootstrap.py`, `handle`): no other
production module calls a relay. Outside production, and so not checked here: `devstack/`
(its local dispatcher), `bench/` and `tests/`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DB = ROOT / "shared" / "db"
PRODUCTION = sorted(p for p in [ROOT / "main.py", *(ROOT / "shared").rglob("*.py"), *(ROOT / "functions").rglob("*.py")])
OUTSIDE_DB = [p for p in PRODUCTION if DB not in p.parents]

WRITES = {"atomic", "run_prepared", "transaction"}  # Database's statement runners, for shared/db only
REPORTS = {"report_committed", "_report_committed", "place_order_in"}  # the unit of work's own

# The relay itself and its caller, the dispatcher (`Container.relay`, `relay_after_response`).
RELAYERS = {ROOT / "shared" / "bootstrap.py", ROOT / "shared" / "handlers" / "relay.py",
            ROOT / "shared" / "handlers" / "relay_after.py"}


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _calls(path: Path) -> list[tuple[str, int]]:
    """Every called name in `path`: `f(...)` and `x.f(...)` both as `f`, with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
            if name:
                found.append((name, node.lineno))
    return found


def _names(path: Path) -> set[str]:
    """Every name `path` mentions: imported, called, or looked up as an attribute."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.ImportFrom):
            names.update(a.name for a in node.names)
    return names


def test_the_walk_sees_the_modules_it_checks():
    assert ROOT / "shared" / "handlers" / "intake.py" in OUTSIDE_DB
    assert ROOT / "functions" / "sweep.py" in OUTSIDE_DB
    assert not [p for p in OUTSIDE_DB if DB in p.parents]
    # ... and would see a write: the database's own module runs them.
    assert "run_prepared" in {n for n, _ in _calls(DB / "sessions.py")}
    assert "place_order_in" in {n for n, _ in _calls(DB / "unit_of_work.py")}


@pytest.mark.parametrize("path", OUTSIDE_DB, ids=_rel)
def test_writes_go_through_the_unit_of_work(path):
    bad = [f"{_rel(path)}:{line} calls {name}()" for name, line in _calls(path) if name in WRITES]
    assert not bad, ("write through UnitOfWork (shared/db/unit_of_work.py), not the database's "
                     f"statement runners: {bad}")


@pytest.mark.parametrize("path", OUTSIDE_DB, ids=_rel)
def test_only_the_unit_of_work_reports_what_it_committed(path):
    bad = _names(path) & REPORTS
    assert not bad, f"{_rel(path)} uses {sorted(bad)}: the unit of work reports its committed orders itself"


def test_only_the_dispatcher_collects_committed_orders():
    users = [_rel(p) for p in OUTSIDE_DB if "committed_orders" in _names(p)]
    assert users == ["shared/bootstrap.py"]


@pytest.mark.parametrize("path", [p for p in PRODUCTION if p not in RELAYERS], ids=_rel)
def test_only_the_dispatcher_relays(path):
    bad = [f"{_rel(path)}:{line} calls {name}()" for name, line in _calls(path)
           if name == "relay" or name.startswith("relay_")]
    assert not bad, f"only the dispatcher (shared/bootstrap.py, handle) relays: {bad}"
