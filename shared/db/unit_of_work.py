"""The unit of work: one transaction and the side effects it causes, written together. Code
outside `shared.db` never runs a statement or a transaction itself: it writes through a unit of
work (tests/unit/test_one_write_path.py holds it to that), or calls one of the few leases below.

    with UnitOfWork(db, now=now, request_id=rid) as uow:
        fx = uow.effects(order_id, actor="timer")
        ... conditional updates on uow.conn, fx.event(...), fx.email(...) ...
        uow.commit()

`commit()` writes every event-log, timer and outbox row the block's `Effects` collected,
in the same transaction as the state change, and commits; leaving the block without it
rolls everything back (an early return included). No handler writes effects by hand.

The order webhook's write is `place_order`: in a block, part of its transaction; outside
one, the whole unit of work as one prepared statement (the intake's fast path: no
BEGIN/COMMIT round trips).

Inside `shared.db` only, a few single statements commit on their own (`Database.atomic`,
`run_prepared`), because they must commit before the caller calls out, and write no effects
(nothing to relay): the leases of claims (an email, a refund, a store action, the outbox's rows) and their
outcomes, the local queue, retention's bounded batch purges.

The orders whose outbox rows a unit of work committed are reported to the dispatcher
(`committed_orders()`), which relays exactly those after the handler returns: reported
here, by the unit of work, never by a handler.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from shared.db import operator_store, outbox, sessions
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


def _report_committed(order_ids) -> None:
    """Tell the enclosing `committed_orders()` block (if any) that these orders have new outbox rows."""
    orders = _committed.get()
    if orders is not None:
        orders.extend(o for o in order_ids if o not in orders)


class UnitOfWork:
    """`now` is the time the collected rows record (a unit of work that collects none may omit it)."""

    def __init__(self, db: Database, *, now: datetime | None = None, request_id: str | None = None) -> None:
        self.db = db
        self.now = now
        self.request_id = request_id
        self.committed = False
        self._effects: list[Effects] = []
        self._placed: list[str] = []  # orders whose outbox rows `place_order` wrote in the transaction
        self._stack: contextlib.ExitStack | None = None  # made on entering (the fast path needs none)
        self._conn: Connection | None = None
        self._transaction = None

    def __enter__(self) -> UnitOfWork:
        self._stack = contextlib.ExitStack()
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
        """A collector for one order's events, timers and outbox rows, written by `commit()`
        (or by `place_order`, when it is given them)."""
        assert self.now is not None, "a unit of work that collects effects needs its `now`"
        fx = Effects(order_id, self.now, self.request_id, actor=actor)
        self._effects.append(fx)
        return fx

    def commit(self) -> None:
        """Write the collected rows (one statement) and commit."""
        events = [row for fx in self._effects for row in fx.events]
        outbox_rows = [row for fx in self._effects for row in fx.outbox]
        timers = [row for fx in self._effects for row in fx.timers]
        actions = [row for fx in self._effects for row in fx.store_actions]
        runs = [row for fx in self._effects for row in fx.effect_runs]
        outbox.write_effects(self.conn, events, outbox_rows, timers, actions, runs)
        notes = [row for fx in self._effects for row in fx.notes]
        if notes:  # an operator's notes (v17): only the console's role writes them
            operator_store.write_notes(self.conn, notes)
        self._transaction.commit()
        self.committed = True
        _report_committed(self._placed + [row.order_id for row in outbox_rows])

    def place_order(self, fx: Effects, params: dict[str, Any]) -> tuple[bool, bool]:
        """(new delivery, new session): the order webhook's write, by the database's `place_order`
        (shared.db.functions): claim the delivery, open the session and, only when it opened,
        write `fx`'s rows (then this statement's, no longer `commit()`'s); a repeat of a known
        order records `order.duplicate`.

        In a `with` block it runs in the block's transaction (after `sessions.lock_order`, say)
        and `commit()` reports the order. Outside one it is the whole unit of work: one prepared
        statement, its own transaction, reported here (the fast path: a guest's order)."""
        if fx.effect_runs:  # PL/pgSQL `place_order` writes no side-effect runs: a new session asks for none
            raise ValueError("place_order writes no effect_runs rows; a transition's effects go through commit()")
        if self._effects:
            self._effects = [each for each in self._effects if each is not fx]
        params = {**params, "events": fx.events, "timers": fx.timers, "outbox": fx.outbox,
                  "store_actions": fx.store_actions}  # rows, written as JSON records by `sessions.argument`
        written = [row.order_id for row in fx.outbox]
        if self._conn is not None:
            claimed, opened = sessions.place_order_in(self.conn, params)
            if opened:
                self._placed.extend(written)
            return claimed, opened
        assert not self.committed and not self._effects, "one statement is the whole unit of work"
        claimed, opened = sessions.place_order(self.db, params)
        self.committed = True
        if opened:
            _report_committed(written)
        return claimed, opened
