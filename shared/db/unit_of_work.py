"""The unit of work: one transaction and the side effects it causes, written together.

    with UnitOfWork(db, now=now, request_id=rid) as uow:
        fx = uow.effects(order_id, actor="timer")
        ... conditional updates on uow.conn, fx.event(...), fx.email(...) ...
        uow.commit()

`commit()` writes every event-log, timer and outbox row the block's `Effects` collected,
in the same transaction as the state change, and commits; leaving the block without it
rolls everything back (an early return included). No handler writes effects by hand.

The orders whose outbox rows a unit of work committed are reported to the dispatcher
(`committed_orders()`), which relays exactly those after the handler returns.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from datetime import datetime

from sqlalchemy.engine import Connection

from shared.db import operator_store, outbox
from shared.db.database import Database
from shared.domain.effects import Effects

_committed: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("committed_orders", default=None)


@contextlib.contextmanager
def committed_orders() -> Iterator[list[str]]:
    """Collect, in order and once each, the orders whose outbox rows were committed in the block."""
    orders: list[str] = []
    token = _committed.set(orders)
    try:
        yield orders
    finally:
        _committed.reset(token)


def report_committed(order_ids) -> None:
    """Tell the enclosing `committed_orders()` block (if any) that these orders have new outbox rows."""
    orders = _committed.get()
    if orders is not None:
        orders.extend(o for o in order_ids if o not in orders)


class UnitOfWork:
    def __init__(self, db: Database, *, now: datetime, request_id: str | None = None) -> None:
        self.db = db
        self.now = now
        self.request_id = request_id
        self.committed = False
        self._effects: list[Effects] = []
        self._stack = contextlib.ExitStack()
        self._conn: Connection | None = None
        self._transaction = None

    def __enter__(self) -> UnitOfWork:
        self._conn = self._stack.enter_context(self.db.connection())
        self._conn.execution_options(isolation_level="READ COMMITTED")
        self._transaction = self._conn.begin()
        return self

    def __exit__(self, *exc_info) -> bool | None:
        try:
            if not self.committed and self._transaction is not None and self._transaction.is_active:
                self._transaction.rollback()
        finally:
            return self._stack.__exit__(*exc_info)

    @property
    def conn(self) -> Connection:
        assert self._conn is not None, "use the unit of work in a with block"
        return self._conn

    def effects(self, order_id: str, *, actor: str = "system") -> Effects:
        """A collector for one order's events, timers and outbox rows, written by `commit()`."""
        fx = Effects(order_id, self.now, self.request_id, actor=actor)
        self._effects.append(fx)
        return fx

    def commit(self) -> None:
        """Write the collected rows (one statement) and commit."""
        events = [row for fx in self._effects for row in fx.events]
        outbox_rows = [row for fx in self._effects for row in fx.outbox]
        timers = [row for fx in self._effects for row in fx.timers]
        actions = [row for fx in self._effects for row in fx.store_actions]
        outbox.write_effects(self.conn, events, outbox_rows, timers, actions)
        notes = [row for fx in self._effects for row in fx.notes]
        if notes:  # an operator's notes (v17): only the console's role writes them
            operator_store.write_notes(self.conn, notes)
        self._transaction.commit()
        self.committed = True
        report_committed([row.order_id for row in outbox_rows])
