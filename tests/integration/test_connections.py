"""The pooled connection's cost (issue 13): no pre-ping round trip, a prepared `place_order`
(one round trip), no TLS set-up for a local server -- and still no stale connection used."""

from __future__ import annotations

import socket
import time
from datetime import datetime, timezone

import pg8000.core
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DisconnectionError

from shared.config import DatabaseSettings
from shared.db import sessions
from shared.db.database import Database
from shared.db.engine import _drop_if_closed, _ssl_context_for, make_engine
from shared.domain.messages import OrderPlaced
from shared.errors import InvalidField, TransientError, sqlstate
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


class _Recording:
    """A pg8000 connection's buffered socket, recording each write."""

    def __init__(self, sock):
        self.sock, self.writes = sock, []

    def write(self, data):
        self.writes.append(bytes(data))
        return self.sock.write(data)

    def __getattr__(self, name):
        return getattr(self.sock, name)


def _messages(data: bytes) -> list[bytes]:
    """The frontend messages' type bytes in `data` (each: a type byte, an int32 length with itself)."""
    types = []
    while data:
        types.append(data[:1])
        data = data[1 + int.from_bytes(data[1:5], "big"):]
    return types


def test_a_prepared_statement_leaves_as_bind_execute_sync_in_one_write_with_no_flush_message(tiny_db):
    """No Flush ('H') between Bind and Execute, nor after Execute (pg8000's `execute_named` sends
    both): the server answers once, in one packet, not three."""
    sql = "SELECT $1::text, $2::text, $3::int, $4::jsonb"
    assert tiny_db.run_prepared(sql, "a", "b", 1, "{}")  # prepared on the pool's one connection
    with tiny_db.engine.connect() as conn:
        driver = conn.connection.dbapi_connection
        recording = driver._sock = _Recording(driver._sock)
    try:
        rows = tiny_db.run_prepared(sql, None, "é ✓ \u00a0", 7, '{"k": [1, null]}')
    finally:
        driver._sock = recording.sock
    assert rows == [[None, "é ✓ \u00a0", 7, {"k": [1, None]}]]  # NULL, UTF-8 and types as before
    assert len(recording.writes) == 1
    assert _messages(recording.writes[0]) == [b"B", b"E", b"S"]


def test_a_pooled_connection_closed_on_the_driver_is_transient_and_replaced(tiny_db):
    """As pg8000's own `execute_named` does: "connection is closed", no SQLSTATE: a 503, and the
    connection never goes back to the pool."""
    sql = "SELECT $1::int"
    assert tiny_db.run_prepared(sql, 1) == [[1]]
    with tiny_db.engine.connect() as conn:
        conn.connection.dbapi_connection.close()
    with pytest.raises(TransientError):
        tiny_db.run_prepared(sql, 2)
    assert tiny_db.run_prepared(sql, 3) == [[3]]


def test_a_prepared_statement_that_fails_leaves_the_connection_usable(tiny_db):
    sql = "SELECT 1 / $1::int"
    assert tiny_db.run_prepared(sql, 1) == [[1]]
    pid = backend_pid(tiny_db)
    with pytest.raises(InvalidField) as raised:
        tiny_db.run_prepared(sql, 0)
    assert sqlstate(raised.value.__cause__) == "22012"  # division by zero: the server's error, in step
    assert tiny_db.run_prepared(sql, 2) == [[0]]
    assert backend_pid(tiny_db) == pid  # the same connection, not replaced


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
        sessions.place_order(tiny_db, {"provider": "orders", "event_id": f"m-{order_id}", "order_id": order_id,
                                    "customer_email": "a@example.com", "ordered_at": "not a time",
                                    "deadline": "not a time", "events": [], "timers": [], "outbox": []})
    assert place(tiny_db, settings, order_id) == "accepted"


def test_a_failure_that_leaves_the_prepared_statements_connection_out_of_step_discards_it(tiny_db, settings,
                                                                                          order_id, monkeypatch):
    """`run_prepared` runs on the pool's connection itself: a failure with no SQLSTATE (the socket
    gone mid-statement) is a TransientError, and that connection never goes back to the pool."""
    assert place(tiny_db, settings, order_id + "-a") == "accepted"
    old = backend_pid(tiny_db)

    def broken(sock):
        raise pg8000.core.InterfaceError("network error")

    monkeypatch.setattr(pg8000.core, "_flush", broken)
    with pytest.raises(TransientError):
        place(tiny_db, settings, order_id)
    monkeypatch.undo()
    assert tiny_db.engine.pool.checkedout() == 0
    assert backend_pid(tiny_db) != old  # a fresh connection, not the one left out of step
    assert place(tiny_db, settings, order_id) == "accepted"


def test_a_database_that_cannot_be_reached_is_transient_for_a_prepared_statement(settings):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    away = Database(make_engine(DatabaseSettings.from_env(base_env(f"postgresql+pg8000://u:p@127.0.0.1:{port}/db"))))
    try:
        with pytest.raises(TransientError):
            sessions.place_order(away, {"provider": "orders", "event_id": "m-away", "order_id": "away"})
    finally:
        away.engine.dispose()


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


def test_pooled_connections_block_as_the_connectors_do_and_find_a_server_gone_silent(tiny_db):
    """The connect had its 5 s; after it, no Python timeout (a poll before every send and
    receive), and TCP keepalive and TCP_USER_TIMEOUT find a server gone without a word."""
    with tiny_db.engine.connect() as conn:
        sock = conn.connection.dbapi_connection._usock
        assert sock.gettimeout() is None
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 10
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 60_000
        assert conn.execute(text("SELECT pg_sleep(0.1), 1")).one()[1] == 1


class _Driver:
    def __init__(self, sock):
        self._usock = sock


@pytest.mark.parametrize("family", ["tcp", "unix"])
def test_the_checkout_check_tells_an_open_connection_from_one_the_peer_closed(family):
    """`_drop_if_closed`'s poll on a TCP connection and on a Unix socket."""
    if family == "tcp":
        with socket.create_server(("127.0.0.1", 0)) as server:
            ours = socket.create_connection(server.getsockname())
            theirs, _ = server.accept()
    else:
        ours, theirs = socket.socketpair()
    with ours:
        _drop_if_closed(_Driver(ours), None, None)  # open, nothing to read: kept
        theirs.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                _drop_if_closed(_Driver(ours), None, None)
            except DisconnectionError:
                break
            time.sleep(0.01)
        else:
            pytest.fail("a connection the peer closed was kept")
    with pytest.raises(DisconnectionError):  # our own end closed
        _drop_if_closed(_Driver(ours), None, None)


def _self_signed(tmp_path, ip: str):
    """A certificate for `ip` signed by nobody a client trusts: (cert file, key file)."""
    import ipaddress
    from datetime import timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "db in the middle")])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=1))
            .not_valid_after(now + timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def _tls_server(cert_file, key_file, host: str) -> tuple[int, list]:
    """Answers PostgreSQL's SSLRequest with 'S', then a TLS handshake; records what it saw."""
    import ssl
    import threading

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    listener = socket.create_server((host, 0))
    seen: list = []

    def serve() -> None:
        with listener:
            listener.settimeout(10)
            for _ in range(2):
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                with conn:
                    conn.recv(8)  # SSLRequest
                    conn.sendall(b"S")
                    try:
                        with context.wrap_socket(conn, server_side=True) as tls:
                            seen.append(("handshake", tls.recv(4096)[:8]))
                    except (ssl.SSLError, OSError) as exc:
                        seen.append(("refused", type(exc).__name__))

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1], seen


def _causes(exc: BaseException):
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__


def test_a_remote_database_url_verifies_the_servers_certificate(tmp_path):
    """Item 13 of issue 24: a DATABASE_URL that is not the loopback connects with TLS verified.
    A server whose certificate nobody signed gets no password (the handshake fails on our
    side); with its CA named by `?sslrootcert=` the handshake completes."""
    import ssl

    host = "127.0.0.2"  # not "local" to the engine, still this machine
    cert_file, key_file = _self_signed(tmp_path, host)
    port, seen = _tls_server(cert_file, key_file, host)
    engine = make_engine(DatabaseSettings.from_env({"DATABASE_URL": f"postgresql+pg8000://u:pw@{host}:{port}/db"}))
    try:
        with pytest.raises(Exception) as refused:
            engine.connect()
    finally:
        engine.dispose()
    assert any(isinstance(e, ssl.SSLCertVerificationError) for e in _causes(refused.value))

    trusted = make_engine(DatabaseSettings.from_env(
        {"DATABASE_URL": f"postgresql+pg8000://u:pw@{host}:{port}/db?sslrootcert={cert_file}"}))
    try:
        with pytest.raises(Exception) as later:  # the stand-in speaks no PostgreSQL after the handshake
            trusted.connect()
    finally:
        trusted.dispose()
    assert not any(isinstance(e, ssl.SSLCertVerificationError) for e in _causes(later.value))
    deadline = time.monotonic() + 5
    while len(seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert seen[0][0] == "refused" and seen[1][0] == "handshake"
