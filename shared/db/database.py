"""Connections and transactions: the pool's connections, a transaction, a statement run as its
own transaction, and the translation of database failures into the service's typed errors.

These are `shared.db`'s tools. Code outside `shared/db` writes only through the unit of work
(`shared.db.unit_of_work.UnitOfWork`) and reads through `read()`
(tests/unit/test_one_write_path.py)."""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterator
from typing import Any

import pg8000.core
import sqlalchemy.exc
from pg8000.converters import make_params
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql import Executable

from shared.errors import InvalidField, ServiceError, TransientError, sqlstate

# SQLSTATE classes that mean "the database is not there right now", not "your SQL is
# wrong": connection exceptions, insufficient resources (53300 too many connections),
# operator intervention (57P01 admin shutdown, 57P03 cannot connect now), and the
# transaction rollbacks a retry resolves (serialization failure, deadlock).
_TRANSIENT_CLASSES = ("08", "53", "57", "58")
_TRANSIENT_STATES = ("40001", "40P01")
# Class 22 is a data exception: the input itself cannot be stored (say a NUL in a text
# field, or a date out of range). Retrying the same input can never succeed.
_DATA_CLASS = "22"
# invalid_sql_statement_name (the prepared statement is gone), feature_not_supported
# ("cached plan must not change result type"): raised before the statement ran.
_STALE_PREPARED = ("26000", "0A000")


def _in_step(exc: BaseException) -> bool:
    """Whether the connection is still in step with the server after `exc`.

    Only an error the server itself reported (it carries a SQLSTATE) leaves the
    protocol where it was; anything else (a socket error, an encoding error
    half-way through sending a statement) leaves the connection in an unknown
    state, and it must never go back to the pool.
    """
    if isinstance(exc, ServiceError):
        return True  # the service's own typed errors say nothing about the connection
    return isinstance(exc, sqlalchemy.exc.DBAPIError) and sqlstate(exc) is not None


def translate(exc: BaseException) -> BaseException | None:
    """The service error a database failure stands for, or None to let it propagate."""
    if isinstance(exc, (sqlalchemy.exc.TimeoutError, sqlalchemy.exc.DisconnectionError, ConnectionError,
                        TimeoutError)):
        return TransientError("database unavailable", component="database")
    if isinstance(exc, UnicodeError):
        # e.g. a lone surrogate the driver cannot encode (the connection is discarded).
        return InvalidField("a value cannot be encoded", field="body")
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        code = sqlstate(exc)
        if code is None or exc.connection_invalidated:
            # No SQLSTATE: the driver lost the server (pg8000 InterfaceError, a reset).
            return TransientError("database unavailable", component="database")
        if code[:2] in _TRANSIENT_CLASSES or code in _TRANSIENT_STATES:
            return TransientError("database unavailable", component="database")
        if code[:2] == _DATA_CLASS:
            return InvalidField("a value cannot be stored", field="body")
    return None


@contextlib.contextmanager
def unavailable_as_transient() -> Iterator[None]:
    """Re-raise database failures as the service's typed errors (see `translate`)."""
    try:
        yield
    except Exception as exc:
        mapped = translate(exc)
        if mapped is None:
            raise
        raise mapped from exc


@contextlib.contextmanager
def _connection(engine: Engine) -> Iterator[Connection]:
    """A pooled connection that is discarded, not returned, when a failure left it out of step."""
    with engine.connect() as conn:
        try:
            yield conn
        except BaseException as exc:
            if not _in_step(exc) and not conn.invalidated:
                with contextlib.suppress(Exception):
                    conn.invalidate()
            raise


def _checkout(engine: Engine) -> PoolProxiedConnection:
    """The pool's connection without SQLAlchemy's `Connection` around it (which `run_prepared`
    never used, and which cost the intake's fast path a tenth of its time in Python). A checkout
    failure is raised as `engine.connect()` raises it."""
    try:
        return engine.raw_connection()
    except engine.dialect.loaded_dbapi.Error as err:  # typed as Connection() types it on checkout
        raise sqlalchemy.exc.DBAPIError.instance(None, None, err, engine.dialect.loaded_dbapi.Error,
                                                 hide_parameters=True, dialect=engine.dialect) from err


def _execute_prepared(engine: Engine, pooled: PoolProxiedConnection, sql: str, values: tuple) -> list[list[Any]]:
    """`_run_prepared` on a pooled connection, once more when the server no longer runs the
    statement this connection prepared (see `Database.run_prepared`); a driver error comes out
    as SQLAlchemy's DBAPIError (its SQLSTATE kept, the parameters hidden)."""
    error = engine.dialect.loaded_dbapi.Error
    prepared = pooled.info.setdefault("prepared", {})  # lives as long as the connection
    try:
        try:
            return _run_prepared(pooled.dbapi_connection, prepared, sql, values)
        except error as exc:
            if sqlstate(exc) not in _STALE_PREPARED:
                raise
            return _run_prepared(pooled.dbapi_connection, prepared, sql, values)
    except error as exc:
        raise sqlalchemy.exc.DBAPIError.instance(sql, None, exc, error, hide_parameters=True,
                                                 dialect=engine.dialect) from exc


def _run_prepared(driver, prepared: dict, sql: str, values: tuple) -> list[list[Any]]:
    """Bind/Execute `sql` on a pg8000 connection, preparing it first if this connection has
    not; a failed statement is forgotten, so that the next call prepares it afresh."""
    try:
        if sql not in prepared:
            prepared[sql] = driver.prepare_statement(sql, ())
        name, columns, input_funcs = prepared[sql]
        context = _bind_execute_sync(driver, name, make_params(driver.py_types, values), columns, input_funcs, sql)
    except Exception:
        prepared.pop(sql, None)
        raise
    return context.rows or []


_INT32 = struct.Struct("!i").pack
_INT16 = struct.Struct("!h").pack
_EXECUTE_SYNC = pg8000.core.EXECUTE_MSG + pg8000.core.SYNC_MSG  # unnamed portal, all rows; then Sync


def _bind_execute_sync(driver, name: bytes, params: tuple, columns, input_funcs, sql: str):
    """pg8000's `execute_named` without its Flush messages: Bind, Execute and Sync leave in one
    write, and the server answers in one packet (pg8000 sends a Flush after Bind and after
    Execute, and the server then sends BindComplete, the rows and ReadyForQuery as three
    packets: three wake-ups of the reading thread, three sends for the server). The messages
    are as pg8000 builds them (text parameters, text results: tests/integration/test_connections.py)."""
    bind = bytearray(b"\x00" + name + _INT16(0) + _INT16(len(params)))  # unnamed portal; all params text
    for value in params:
        if value is None:
            bind += _INT32(-1)
        else:
            encoded = value.encode(driver._client_encoding)
            bind += _INT32(len(encoded)) + encoded
    bind += _INT16(0)  # results in text
    context = pg8000.core.Context(columns=columns, input_funcs=input_funcs, statement=sql)
    sock = driver._sock
    if sock is None:  # closed on the driver: raised as pg8000 raises it
        raise pg8000.core.InterfaceError("connection is closed")
    pg8000.core._write(sock, pg8000.core.BIND + _INT32(len(bind) + 4) + bind + _EXECUTE_SYNC)
    pg8000.core._flush(sock)
    driver.handle_messages(context)
    return context


class Database:
    """Owns the engine and hands out its connections: `transaction()`, `atomic()` and
    `run_prepared()` for `shared.db`'s own statements (the unit of work, the outbox's claims,
    the local queue, retention's batches), `connection()` for the unit of work's transaction,
    `read()` for reads.

    The engine's connections idle in autocommit mode: the pool's pre-ping then
    never opens a transaction (pg8000 would otherwise begin one that a later
    switch to autocommit silently keeps open), and single statements need no
    BEGIN/COMMIT round trips. `transaction()` switches its connection to READ
    COMMITTED for the block; the pool restores autocommit on return.

    Every failure comes out typed (`translate`): the database being away is a
    TransientError, a value it cannot store an InvalidField; a connection that a
    failure left out of step with the server is invalidated, never reused.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """BEGIN ... COMMIT; rolls back when the block raises."""
        with unavailable_as_transient(), _connection(self.engine) as conn:
            conn.execution_options(isolation_level="READ COMMITTED")
            with conn.begin():
                yield conn

    def atomic(self, statement: Executable, params: dict[str, Any] | None = None) -> list[Any]:
        """Run one statement as its own transaction (no BEGIN/COMMIT round trips).

        A single PostgreSQL statement, data-modifying CTEs included, commits
        or fails as a whole: one transaction in one round trip. For `shared.db`'s own
        statements (claims, leases, retention's batch purges); elsewhere, `UnitOfWork`.
        """
        with unavailable_as_transient(), _connection(self.engine) as conn:
            result = conn.execute(statement, params or {})
            return list(result) if result.returns_rows else []

    def run_prepared(self, sql: str, *values: Any) -> list[list[Any]]:
        """Run one statement (`$1`, `$2` ... placeholders, each cast in the SQL) as
        its own transaction, prepared once per pooled connection: each call is then a single
        round trip (Bind/Execute/Sync), where `atomic` spends three (Parse, Describe,
        Bind/Execute) and pg8000 re-scans the SQL text. For the intake path's statements
        (`UnitOfWork.place_order`'s fast path, the outbox's claims, the local queue).

        A prepared statement the server no longer runs (deallocated, or its plan's result
        type changed under a migration) fails before executing anything: it is prepared
        afresh and run once more.
        """
        # The steps of `unavailable_as_transient()` around a connection's context manager, as
        # the other methods take them, written out: the two context managers cost 5 µs of CPU a
        # call (a `SELECT 1` here, measured alone: 67 µs, 61 without), on the intake's fast path.
        try:
            pooled = _checkout(self.engine)
            try:
                return _execute_prepared(self.engine, pooled, sql, values)
            except BaseException as exc:
                if not _in_step(exc) and pooled.is_valid:
                    with contextlib.suppress(Exception):
                        pooled.invalidate(exc)  # also gives it back to the pool, which discards it
                raise
            finally:
                if pooled.is_valid:
                    pooled.close()
        except Exception as exc:
            mapped = translate(exc)
            if mapped is None:
                raise
            raise mapped from exc

    @contextlib.contextmanager
    def connection(self) -> Iterator[Connection]:
        """A pooled connection with typed errors, for a caller that runs its own transaction
        (the unit of work)."""
        with unavailable_as_transient(), _connection(self.engine) as conn:
            yield conn

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """An autocommit connection for reads (no transaction round trips)."""
        with unavailable_as_transient(), _connection(self.engine) as conn:
            yield conn

    def ping(self) -> None:
        with self.read() as conn:
            conn.execute(text("SELECT 1"))
