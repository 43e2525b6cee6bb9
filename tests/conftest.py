"""Fixtures shared by every test: a real PostgreSQL started for the session, settings, ids."""

from __future__ import annotations

import base64
import ipaddress
import os
import shutil
import socket
import tempfile
import uuid
from pathlib import Path

import pytest

os.environ.setdefault("NO_GCE_CHECK", "true")

# Emulator fixtures (Cloud Tasks, Pub/Sub), available to every test module.
pytest_plugins = ["tests.emulators.fixtures", "tests.emulators.pubsub"]

from devstack.postgres import Postgres, free_port  # noqa: E402
from shared.config import Settings  # noqa: E402
from shared.db.database import Database  # noqa: E402
from shared.db.engine import make_engine  # noqa: E402
from shared.db.migrate import ensure_schema  # noqa: E402

ORDER_SECRET_KEY = b"test-order-webhook-key-32-bytes!"
ORDER_SECRET = "whsec_" + base64.b64encode(ORDER_SECRET_KEY).decode()
VERIFF_SECRET = "veriff-shared-secret"
VERIFF_API_KEY = "veriff-api-key"
LIGHTSPEED_SECRET = "lightspeed-client-secret"
CUSTOMER_KEY_SECRET = "customer-key-pepper-for-tests-only"


_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "ip6-localhost"}
_real_connect = socket.socket.connect
_real_getaddrinfo = socket.getaddrinfo


def _is_loopback(host) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host in _LOOPBACK_NAMES


def _guarded_connect(sock, address):
    if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
        raise OSError(f"tests may only reach 127.0.0.1, not {address[0]}")
    return _real_connect(sock, address)


def _guarded_getaddrinfo(host, *args, **kwargs):
    if host is not None and not _is_loopback(host if isinstance(host, str) else host.decode()):
        raise socket.gaierror(socket.EAI_NONAME, f"tests may only resolve loopback names, not {host}")
    return _real_getaddrinfo(host, *args, **kwargs)


@pytest.fixture(scope="session", autouse=True)
def loopback_only():
    """Every connection a test makes in this process stays on this machine."""
    socket.socket.connect = _guarded_connect
    socket.getaddrinfo = _guarded_getaddrinfo
    yield
    socket.socket.connect = _real_connect
    socket.getaddrinfo = _real_getaddrinfo


@pytest.fixture(scope="session")
def postgres():
    """The session's PostgreSQL: TEST_DATABASE_URL if given, else one started here."""
    if os.environ.get("TEST_DATABASE_URL"):
        yield os.environ["TEST_DATABASE_URL"]
        return
    data_dir = Path(tempfile.mkdtemp(prefix="verification-pg-"))
    server = Postgres(data_dir, free_port()).start()
    try:
        yield server
    finally:
        server.stop("immediate")
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def database_url(postgres) -> str:
    return postgres if isinstance(postgres, str) else postgres.url


def base_env(database_url: str, **overrides: str) -> dict[str, str]:
    env = {
        "DATABASE_URL": database_url,
        "ORDER_WEBHOOK_SECRET": ORDER_SECRET,
        "VERIFF_SHARED_SECRET": VERIFF_SECRET,
        "VERIFF_API_KEY": VERIFF_API_KEY,
        "LIGHTSPEED_CLIENT_SECRET": LIGHTSPEED_SECRET,
        "CUSTOMER_KEY_SECRET": CUSTOMER_KEY_SECRET,
        "TASKS_BACKEND": "local",
        "TIMER_URL": "http://127.0.0.1:9/timer",
        "EVENTS_BACKEND": "local",
        "VERIFF_BASE_URL": "local",  # never the real provider from a test
        "DB_POOL_SIZE": "5",
        "DB_MAX_OVERFLOW": "20",
    }
    env.update(overrides)
    return env


@pytest.fixture(scope="session")
def settings(database_url) -> Settings:
    return Settings.from_env(base_env(database_url))


@pytest.fixture(scope="session")
def db(settings) -> Database:
    database = Database(make_engine(settings.database))
    ensure_schema(database)
    return database


@pytest.fixture
def fresh_database(postgres, database_url) -> str:
    """The URL of an empty database of its own on the session's server, dropped afterwards."""
    if isinstance(postgres, str):
        pytest.skip("TEST_DATABASE_URL given: this test needs to create a database")
    import pg8000.native

    name = f"fresh_{uuid.uuid4().hex[:10]}"
    admin = pg8000.native.Connection("postgres", host="127.0.0.1", port=postgres.port, database="postgres")
    admin.run(f'CREATE DATABASE "{name}"')
    yield database_url.rsplit("/", 1)[0] + f"/{name}"
    admin.run(f'DROP DATABASE "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture
def captured_logs():
    """Every log line written during the test, as the functions format them (JSON); a StringIO."""
    import io
    import logging

    from shared.log import JsonFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.fixture
def order_id() -> str:
    return f"order-{uuid.uuid4().hex[:12]}"
