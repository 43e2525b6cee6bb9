"""The pooled connection's cost (issue 13): no pre-ping round trip, a prepared `place_order`
(one round trip), no TLS set-up for a local server -- and still no stale connection used."""

from __future__ import annotations

import socket
import time
from datetime import datetime, timezone

import pg8000.core
import pytest
from sqlalchemy import text

from shared.config import DatabaseSettings
from shared.db import store
from shared.db.database import Database
from shared.db.engine import _ssl_context_for, make_engine
from shared.domain.messages import OrderPlaced
from shared.errors import InvalidField
from shared.handlers import intake
from tests.conftest import base_env

NOW = datetime.now(timezone.utc)


@pytest.fixture
def tiny_db(database_url, db):
    """One pooled connection (on the schema the session's `db` fixture migrated)."""
    database = Database(make_engine(DatabaseSettings.from_env(base_env(database_url, DB_POOL_SIZE="1",
                                                               DB_MAX_OVERFLOW="0"))))
    yield database
    database.engine.dispose()


def place(db, settings, order_id) -> str:
    return intake.place_order(db, settings, OrderPlaced("orders", f"m-{order_id}", order_id, "a@example.com"),
                              now=NOW).status


def backend_pid(db) -> int:
    with db.read() as conn:
        return conn.execute(text("SELECT pg_backend_pid()")).scalar_one()


@pytest.fixture
def flushes(monkeypatch):
    """Counts pg8000's socket flushes: each is one wait for the server's answer."""
    count = [0]
    original = pg8000.core._flush

    def counting(sock):
        count[0] += 1
        return original(sock)

    monkeypatch.setattr(pg8000.core, "_flush", counting)
    return count


def test_place_order_is_one_round_trip_once_prepared(tiny_db, settings, order_id, flushes):
    assert place(tiny_db, settings, order_id + "-a") == "accepted"  # prepares on this connection
    before = flushes[0]
    assert place(tiny_db, settings, order_id) == "accepted"
    assert flushes[0] - before == 1  # Bind/Execute/Sync; no pre-ping, no Parse, no Describe
    assert place(tiny_db, settings, order_id) == "duplicate"


def test_a_connection_the_server_closed_is_replaced_before_anything_is_sent(db, tiny_db, settings, order_id):
    assert place(tiny_db, settings, order_id + "-a") == "accepted"
    old = backend_pid(tiny_db)
    with db.read() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": old}).scalar_one()
    deadline = time.monotonic() + 5
    while query_pid(db, old) and time.monotonic() < deadline:
        time.sleep(0.02)

    assert place(tiny_db, settings, order_id) == "accepted"  # no error reached the caller
    assert backend_pid(tiny_db) != old
    assert place(tiny_db, settings, order_id) == "duplicate"  # prepared again on the new connection


def query_pid(db, pid) -> bool:
    with db.read() as conn:
        return bool(conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p"), {"p": pid})
                    .scalar_one())


def test_a_value_the_prepared_statement_cannot_store_is_typed_and_the_pool_goes_on(tiny_db, settings, order_id):
    with pytest.raises(InvalidField):
        store.place_order(tiny_db, {"provider": "orders", "event_id": f"m-{order_id}", "order_id": order_id,
                                    "customer_email": "a@example.com", "ordered_at": "not a time",
                                    "deadline": "not a time", "events": [], "timers": [], "outbox": []})
    assert place(tiny_db, settings, order_id) == "accepted"


def test_no_tls_set_up_for_a_local_server_and_one_shared_context_otherwise():
    assert _ssl_context_for("postgresql+pg8000://u:p@127.0.0.1:5432/db") is False
    assert _ssl_context_for("postgresql+pg8000://u:p@localhost/db") is False
    remote = _ssl_context_for("postgresql+pg8000://u:p@db.example.com/db")
    assert remote is _ssl_context_for("postgresql+pg8000://u:p@other.example.com/db")


def test_a_prepared_statement_the_server_dropped_is_prepared_again(tiny_db, settings, order_id):
    assert place(tiny_db, settings, order_id + "-a") == "accepted"
    with tiny_db.read() as conn:  # the pool's one connection: the one holding the statement
        conn.execute(text("DEALLOCATE ALL"))
    assert place(tiny_db, settings, order_id) == "accepted"


def test_pooled_tcp_connections_send_without_nagle_delay(tiny_db):
    """A statement over pg8000's 8 KB buffer leaves in several segments; with Nagle's algorithm
    the last would wait for the server's delayed ACK (40 ms). bench/nodelay.py measures it."""
    with tiny_db.engine.connect() as conn:
        sock = conn.connection.dbapi_connection._usock
        assert sock.family in (socket.AF_INET, socket.AF_INET6)  # the suite's server is on 127.0.0.1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
