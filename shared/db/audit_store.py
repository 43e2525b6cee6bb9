"""The audit trail of reads (`read_audit`, issue 24): one row a read, written on the connection
that read the data and before it is returned, so a read the trail cannot record is not served
(the database failing answers the console's 503 page, the CLI's error line).

The console's role inserts and reads; nobody updates; the sweep deletes rows older than RETENTION.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection

from shared.db.schema import read_audit
from shared.domain import keys
from shared.domain.audit import ReadEntry

PAGE = 100


def record(conn: Connection, entry: ReadEntry) -> None:
    """Write one entry (autocommit on a read connection: it is stored when this returns)."""
    conn.execute(insert(read_audit).values(actor=entry.actor, action=str(entry.action), order_id=entry.order_id,
                                           email_key=entry.email_key, detail=entry.detail))


def recent(conn: Connection, *, order: str | None = None, email_key: str | None = None,
           before: int | None = None, limit: int = PAGE) -> tuple[list[dict[str, Any]], int | None]:
    """The newest entries (before the id `before`), of one order (every key `order` may mean:
    a bare `123` also finds `lightspeed:123`) and/or one email's keyed hash (both: entries
    matching both); and the `before` of the next page (None on the last)."""
    query = select(read_audit.c.id, read_audit.c.at, read_audit.c.actor, read_audit.c.action,
                   read_audit.c.order_id, read_audit.c.email_key, read_audit.c.detail)
    if order:
        query = query.where(read_audit.c.order_id.in_(keys.candidate_keys(order)))
    if email_key:
        query = query.where(read_audit.c.email_key == email_key)
    if before is not None:
        query = query.where(read_audit.c.id < before)
    rows = [dict(r) for r in conn.execute(query.order_by(read_audit.c.id.desc()).limit(limit + 1)).mappings()]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1]["id"] if more and rows else None)
