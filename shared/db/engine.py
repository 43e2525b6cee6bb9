"""Engine construction: DATABASE_URL through pg8000, else the Cloud SQL connector.

No round trip is spent checking a connection out. Instead of `pool_pre_ping` (a
`SELECT 1` per checkout), a checkout looks at the idle socket without waiting: an idle
PostgreSQL connection has nothing to read, so anything readable (the end of the stream,
or the FATAL message a server sends when it closes a session) means the server let it
go; the pool then discards it and connects afresh. Nothing was sent on it, so nothing
can have committed: the first statement goes out on the fresh connection. A connection
that fails once a statement was sent is never retried here (the statement may have
committed): it is discarded and the caller's error is transient (`shared.db.database`).

Nagle: pg8000 writes a statement through a buffered file, so a statement over its 8 KB
buffer (a relay pass's rows, say) leaves in several segments; with Nagle's algorithm the
last waits for the server's delayed ACK, 40 ms on Linux. Each connection's TCP socket
gets TCP_NODELAY (bench: 20 queued messages, 44 ms → under 1 ms).

Waiting: every connection waits on its socket the way the Cloud SQL connector's does, in
blocking mode. pg8000 keeps the `timeout` it connected with (5 s, for DATABASE_URL) on the
socket for good: Python then polls before every send and receive (bench.intake_parts, three
runs: the intake 0.96 to 1.10 times as fast without, within its noise), and a statement that
rightly runs past 5 s (a lock wait, a long purge) is cut off with its connection, which
production's sockets never do.
So the connect keeps its 5 s; after it, the socket blocks, as production's does. A server
gone without a word (a dropped network path, a failed-over host) is found by TCP keepalive
and TCP_USER_TIMEOUT on every connection, the connector's included: within about a minute
the statement fails as a TransientError (the database away). Before, the connector's socket
had no keepalive at all, and pg8000's own starts probing after the kernel's two hours.

TLS: pg8000 builds a new SSL context for every connection unless told otherwise
(about 25 ms). A database on the loopback or a Unix socket gets none; any other
DATABASE_URL shares one context built once, which verifies the server's certificate and
name (the system's CAs, or the CA file named by `?sslrootcert=` in the URL); the Cloud
SQL connector brings its own TLS socket, so pg8000 adds none on top.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import select
import socket
import ssl

import sqlalchemy
from sqlalchemy import event, exc
from sqlalchemy.engine import Engine, make_url

from shared.config import DatabaseSettings
from shared.errors import ConfigError

log = logging.getLogger(__name__)


def make_engine(settings: DatabaseSettings) -> Engine:
    """A small pool whose checkouts drop closed connections, disposed at interpreter exit."""
    common = dict(
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        isolation_level="AUTOCOMMIT",  # see shared.db.database.Database
        pool_recycle=1800,
        pool_timeout=10,
        hide_parameters=True,  # keep customer data out of error messages and logs
    )
    if settings.url:
        url = make_url(settings.url)
        engine = sqlalchemy.create_engine(
            url.difference_update_query(["sslrootcert"]),  # ours to read, not pg8000's
            connect_args={"timeout": 5, "application_name": "verification",
                          "ssl_context": _ssl_context_for(settings.url)},
            **common,
        )
    else:
        engine = sqlalchemy.create_engine(
            "postgresql+pg8000://", creator=_cloud_sql_creator(settings), **common
        )
    event.listen(engine.pool, "connect", _socket_options)
    event.listen(engine.pool, "checkout", _drop_if_closed)
    atexit.register(engine.dispose)
    return engine


_LOCAL_HOSTS = {None, "", "localhost", "127.0.0.1", "::1"}


def _ssl_context_for(url: str) -> ssl.SSLContext | bool:
    """False (no TLS) for a local server, else the process's one shared, verifying context."""
    parsed = make_url(url)
    if parsed.host in _LOCAL_HOSTS or "unix_sock" in parsed.query:
        return False
    return _shared_ssl_context(parsed.query.get("sslrootcert") or None)


@functools.cache
def _shared_ssl_context(ca_file: str | None) -> ssl.SSLContext:
    # The certificate and the host name are checked (pg8000's own default checks neither):
    # a remote DATABASE_URL must not hand the password to whoever answers on the way.
    return ssl.create_default_context(cafile=ca_file)


# Dead-peer detection (see the module): probes after 30 s without traffic, every 10 s, 3 unanswered
# ones close the connection; data unacknowledged for 60 s does too.
_KEEPALIVE = ((socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1), (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 30),
              (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 10), (socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3),
              (socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 60_000))


def _socket_options(dbapi_connection, _record) -> None:
    """Pool connect hook (see the module): statements leave at once, whatever their size; the
    socket blocks, as the Cloud SQL connector's does (the connect alone had the 5 s timeout);
    TCP finds a server gone without a word."""
    sock = getattr(dbapi_connection, "_usock", None)
    if sock is None:
        return
    sock.settimeout(None)
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for level, option, value in _KEEPALIVE:
            with contextlib.suppress(OSError):  # a sandbox without the option: the connection still works
                sock.setsockopt(level, option, value)


def _drop_if_closed(dbapi_connection, _record, _proxy) -> None:
    """Pool checkout hook: raise DisconnectionError (the pool reconnects) when the server has
    closed this idle connection. A zero-timeout poll of the socket: no round trip."""
    sock = getattr(dbapi_connection, "_usock", None)
    if sock is None:
        return
    try:
        poller = select.poll()  # not select(): no limit on the descriptor's number
        poller.register(sock, select.POLLIN)
        readable = poller.poll(0)
    except (OSError, ValueError) as error:  # closed socket: fileno() is -1
        raise exc.DisconnectionError("connection closed") from error
    if readable or (isinstance(sock, ssl.SSLSocket) and sock.pending()):
        raise exc.DisconnectionError("server closed the connection")


def _cloud_sql_creator(settings: DatabaseSettings):
    """Connection factory for Cloud SQL; the connector is made on first connect."""
    connector = None

    def connect():
        nonlocal connector
        if connector is None:
            connector = _make_connector()
            atexit.register(connector.close)
        return connector.connect(
            settings.instance_connection_name,
            "pg8000",
            user=settings.user,
            password=None if settings.iam_auth else settings.password,
            db=settings.name,
            enable_iam_auth=settings.iam_auth,
            ssl_context=False,  # the connector's socket is already TLS
        )

    return connect


_SQL_ADMIN_SCOPES = ["https://www.googleapis.com/auth/sqlservice.admin"]  # as the connector asks for


def _make_connector():
    """The Cloud SQL connector, with the application default credentials found first: the
    connector starts its event loop's thread before it looks for them, and a connector that
    then fails is never closed (each attempt without credentials left a thread running)."""
    import google.auth
    import google.auth.exceptions
    from google.cloud.sql.connector import Connector, RefreshStrategy

    try:
        credentials, _ = google.auth.default(scopes=_SQL_ADMIN_SCOPES)
    except google.auth.exceptions.DefaultCredentialsError as exc:
        raise ConfigError(
            "INSTANCE_CONNECTION_NAME",
            "the Cloud SQL connector found no Google credentials "
            "(set DATABASE_URL for a local database, or run with a service account)",
        ) from exc
    return Connector(refresh_strategy=RefreshStrategy.LAZY, credentials=credentials)
