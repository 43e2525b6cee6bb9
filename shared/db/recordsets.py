"""INSERTs of typed rows (`shared.domain.rows`) from a JSON array, built from one place.

`jsonb_to_recordset(...) AS r(col type, ...)` needs each column's name and type; both come
from the row's dataclass fields and the table's Core definition, so the Python writers and
the PL/pgSQL `place_order` cannot drift apart.
"""

from __future__ import annotations

from dataclasses import fields

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql

from shared.db.schema import countdown_timers, effect_runs, event_log, outbox, store_actions
from shared.domain.rows import EffectRunRow, EventRow, OutboxRow, StoreActionRow, TimerRow

TABLES: dict[type, Table] = {EventRow: event_log, OutboxRow: outbox, TimerRow: countdown_timers,
                             StoreActionRow: store_actions, EffectRunRow: effect_runs}
# A timer row may be written twice (a retried unit of work): the first one stands. So does a
# store action (one per order, action and connector, whatever asks for it again), and a side
# effect's run (one per order and effect: a second transition asking for it adds nothing).
_ON_CONFLICT = {TimerRow: " ON CONFLICT DO NOTHING", StoreActionRow: " ON CONFLICT DO NOTHING",
                EffectRunRow: " ON CONFLICT DO NOTHING"}


def columns(row_type: type) -> list[str]:
    return [f.name for f in fields(row_type)]


def insert_from_json(row_type: type, source: str) -> str:
    """`INSERT INTO table (...) SELECT ... FROM jsonb_to_recordset(<source>) AS r(...)`."""
    table = TABLES[row_type]
    names = columns(row_type)
    dialect = postgresql.dialect()
    typed = ", ".join(f"{name} {table.c[name].type.compile(dialect=dialect)}" for name in names)
    listed = ", ".join(names)
    return (f"INSERT INTO {table.name} ({listed}) SELECT {listed} "
            f"FROM jsonb_to_recordset({source}) AS r({typed}){_ON_CONFLICT.get(row_type, '')}")
