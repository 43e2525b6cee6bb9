"""The unit of work: transactions, single-statement atomic writes, error translation."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import sqlalchemy.exc
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql import Executable

from shared.errors import TransientError

# Failures that mean "the database is not there right now", not "your SQL is wrong".
_UNAVAILABLE = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.TimeoutError,
    sqlalchemy.exc.DisconnectionError,
)
# pg8000 raises InterfaceError both for a lost network and for a malformed
# query; only the former is worth a retry.
_NETWORK = ("can't create a connection", "network error", "connection is closed", "timeout")


@contextlib.contextmanager
def unavailable_as_transient() -> Iterator[None]:
    try:
        yield
    except _UNAVAILABLE as exc:
        raise TransientError("database unavailable", component="database") from exc
    except sqlalchemy.exc.DBAPIError as exc:
        message = str(exc.orig).lower()
        if exc.connection_invalidated or any(marker in message for marker in _NETWORK):
            raise TransientError("database unavailable", component="database") from exc
        raise


class Database:
    """Owns the engine; every write goes through `transaction()` or `atomic()`.

    The engine's connections idle in autocommit mode: the pool's pre-ping then
    never opens a transaction (pg8000 would otherwise begin one that a later
    switch to autocommit silently keeps open), and single statements need no
    BEGIN/COMMIT round trips. `transaction()` switches its connection to READ
    COMMITTED for the block; the pool restores autocommit on return.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """BEGIN ... COMMIT; rolls back when the block raises."""
        with unavailable_as_transient(), self.engine.connect() as conn:
            conn.execution_options(isolation_level="READ COMMITTED")
            with conn.begin():
                yield conn

    def atomic(self, statement: Executable, params: dict[str, Any] | None = None) -> list[Any]:
        """Run one statement as its own transaction (no BEGIN/COMMIT round trips).

        A single PostgreSQL statement, data-modifying CTEs included, commits
        or fails as a whole, so this is a full unit of work in one round trip.
        """
        with unavailable_as_transient(), self.engine.connect() as conn:
            result = conn.execute(statement, params or {})
            return list(result) if result.returns_rows else []

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """An autocommit connection for reads (no transaction round trips)."""
        with unavailable_as_transient(), self.engine.connect() as conn:
            yield conn

    def ping(self) -> None:
        with self.read() as conn:
            conn.execute(text("SELECT 1"))
