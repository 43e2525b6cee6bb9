"""The typed rows are the one shape of event, outbox and timer rows: every field is a column of
its table, and every writer (the unit of work's statement and PL/pgSQL place_order) inserts
exactly those columns."""

from __future__ import annotations

import re
from dataclasses import fields

import pytest

from shared.db import outbox
from shared.db.functions import PLACE_ORDER
from shared.db.recordsets import TABLES, insert_from_json
from shared.domain.rows import ROW_TYPES


@pytest.mark.parametrize("row_type", ROW_TYPES, ids=lambda t: t.__name__)
def test_every_field_is_a_column_of_its_table(row_type):
    table = TABLES[row_type]
    names = [f.name for f in fields(row_type)]
    assert set(names) <= set(table.columns.keys())
    # Every column a writer must fill (no default, not null, not generated) is a field.
    required = {c.name for c in table.columns
                if not c.nullable and c.server_default is None and not c.autoincrement is True}
    assert required <= set(names)


@pytest.mark.parametrize("row_type", ROW_TYPES, ids=lambda t: t.__name__)
def test_both_writers_insert_exactly_the_fields(row_type):
    statement = insert_from_json(row_type, "SOURCE")
    inserted = re.search(r"INSERT INTO \w+ \(([^)]*)\)", statement).group(1).split(", ")
    assert inserted == [f.name for f in fields(row_type)]
    assert statement.split("SOURCE")[0] in str(outbox._write_effects_statement((row_type,)))
    assert statement.replace("SOURCE", f"p->'{_json_key(row_type)}'") in PLACE_ORDER


def _json_key(row_type) -> str:
    return {"EventRow": "events", "OutboxRow": "outbox", "TimerRow": "timers",
            "StoreActionRow": "store_actions"}[row_type.__name__]
