"""SQL lives in `shared/db/` only (issue 22): no other production module (`shared/`, `functions/`,
`main.py`) writes a statement or builds one with SQLAlchemy; it calls `shared/db`'s functions.

Outside production, and so not checked here: `devstack/` (the local stack's PostgreSQL set-up),
`bench/` and `tests/` (they read and write rows to set up and check what the code did)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DB = ROOT / "shared" / "db"
MODULES = sorted(p for p in [ROOT / "main.py", *(ROOT / "shared").rglob("*.py"), *(ROOT / "functions").rglob("*.py")]
                 if DB not in p.parents)
# A statement: SELECT <columns> FROM, INSERT INTO, UPDATE <table> SET, DELETE FROM (upper case, as
# the project writes SQL; prose says "select" in lower case).
STATEMENT = re.compile(r"\bSELECT\s+[\w.*(),:'\s]+?\s+FROM\s|\bINSERT\s+INTO\s|\bUPDATE\s+\w+\s+SET\s|\bDELETE\s+FROM\s")
ALLOWED_SQLALCHEMY = {"sqlalchemy.exc"}  # catching the driver's errors is not writing SQL


def sql_in(path: Path) -> list[str]:
    source = path.read_text(encoding="utf-8")
    found = [match.group(0).split()[0] for match in STATEMENT.finditer(source)]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
            found += [f"from {node.module} import {a.name}" for a in node.names
                      if node.module not in ALLOWED_SQLALCHEMY]
        elif isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names
                      if a.name.startswith("sqlalchemy") and a.name not in ALLOWED_SQLALCHEMY]
        elif isinstance(node, ast.Attribute) and node.attr in ("exec_driver_sql", "execute") \
                and isinstance(node.value, ast.Name) and node.value.id in ("conn", "connection", "cursor"):
            found.append(f"{node.value.id}.{node.attr}")
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_sql_outside_shared_db(path):
    assert sql_in(path) == []


def test_the_check_finds_sql(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text('from sqlalchemy import text\nQ = text("""\n    SELECT order_id, count(*)\n    FROM outbox""")\n'
                     'R = "UPDATE outbox SET x = 1"\ndef f(conn):\n    conn.exec_driver_sql(R)\n')
    assert sql_in(probe) == ["SELECT", "UPDATE", "from sqlalchemy import text", "conn.exec_driver_sql"]
    probe.write_text('"""One cheap SELECT on the queue table; it reads from the database."""\nimport sqlalchemy.exc\n')
    assert sql_in(probe) == []
    assert len(MODULES) > 40
