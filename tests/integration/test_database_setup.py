"""Engine construction and schema creation: clear errors, and safe when instances start together."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from shared.config import Settings
from shared.db.database import Database
from shared.db.engine import _make_connector, make_engine
from shared.db.migrate import LATEST, ensure_schema
from shared.errors import ConfigError


def test_cloud_sql_without_credentials_is_a_configuration_error(monkeypatch, tmp_path):
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))  # no gcloud login to fall back on
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    settings = Settings.from_env({"INSTANCE_CONNECTION_NAME": "proj:region:inst", "DB_USER": "svc",
                                  "DB_PASSWORD": "pw", "TASKS_BACKEND": "local",
                                  "TIMER_URL": "http://127.0.0.1:1/", "EVENTS_BACKEND": "local"})
    engine = make_engine(settings.database)  # lazy: nothing is contacted yet
    with pytest.raises(ConfigError) as error:
        engine.connect()
    assert error.value.variable == "INSTANCE_CONNECTION_NAME"
    assert "credentials" in str(error.value)
    before = set(threading.enumerate())
    for _ in range(3):  # every request retries the connect: none may leave a thread behind
        with pytest.raises(ConfigError):
            engine.connect()
    assert set(threading.enumerate()) - before == set()
    engine.dispose()


def test_eight_instances_starting_together_migrate_once(fresh_database):
    settings = Settings.from_env({"DATABASE_URL": fresh_database, "TASKS_BACKEND": "local",
                                  "TIMER_URL": "http://127.0.0.1:1/", "EVENTS_BACKEND": "local"})
    databases = [Database(make_engine(settings.database)) for _ in range(8)]
    barrier = threading.Barrier(8)
    versions, errors = [], []

    def start(db):
        barrier.wait()
        try:
            versions.append(ensure_schema(db))
        except Exception as exc:  # collected: the assertion below names it
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(db,)) for db in databases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and versions == [LATEST] * 8
    with databases[0].read() as conn:
        recorded = conn.execute(text("SELECT version FROM schema_version ORDER BY version")).scalars().all()
        pending_index = conn.execute(text(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'verification_sessions_pending_deadline'")).scalar()
    assert recorded == list(range(1, LATEST + 1))
    assert "WHERE (status = 'pending'::text)" in pending_index
    for db in databases:
        db.engine.dispose()


def test_a_version_1_database_migrates_forward(fresh_database):
    """A database left at v1 by an older release (no outbox.dead_at) is brought to LATEST."""
    settings = Settings.from_env({"DATABASE_URL": fresh_database, "TASKS_BACKEND": "local",
                                  "TIMER_URL": "http://127.0.0.1:1/", "EVENTS_BACKEND": "local"})
    db = Database(make_engine(settings.database))
    ensure_schema(db)
    with db.transaction() as conn:  # roll the database back to what v1 used to create
        conn.execute(text("DROP INDEX outbox_undelivered"))
        conn.execute(text("ALTER TABLE outbox DROP COLUMN dead_at"))
        conn.execute(text("CREATE INDEX outbox_undelivered ON outbox (available_at) WHERE delivered_at IS NULL"))
        conn.execute(text("DROP INDEX event_log_superseded_approvals, event_log_sessionless"))  # v11's
        conn.execute(text("DELETE FROM schema_version WHERE version > 1"))
    assert ensure_schema(db) == LATEST
    with db.read() as conn:
        column = conn.execute(text("SELECT count(*) FROM information_schema.columns "
                                   "WHERE table_name = 'outbox' AND column_name = 'dead_at'")).scalar()
        index = conn.execute(text("SELECT indexdef FROM pg_indexes WHERE indexname = 'outbox_undelivered'")).scalar()
        versions = conn.execute(text("SELECT version FROM schema_version ORDER BY version")).scalars().all()
        v11 = dict(conn.execute(text("SELECT indexname, indexdef FROM pg_indexes WHERE indexname IN "
                                     "('event_log_superseded_approvals', 'event_log_sessionless')")).all())
    assert column == 1 and "dead_at IS NULL" in index and versions == list(range(1, LATEST + 1))
    assert "superseded_session" in v11["event_log_superseded_approvals"]
    assert "no_customer_email" in v11["event_log_sessionless"]
    db.engine.dispose()


def test_the_cloud_sql_connector_gets_the_credentials_found_first(monkeypatch):
    """`_make_connector` looks the credentials up itself and hands them to the connector (whose
    own look-up would come after its thread started)."""
    import google.auth
    from google.auth.credentials import AnonymousCredentials

    found = AnonymousCredentials()
    asked = []
    monkeypatch.setattr(google.auth, "default", lambda scopes=None: (asked.append(scopes), (found, "proj"))[1])
    connector = _make_connector()
    try:
        assert connector._credentials is found
        assert asked == [["https://www.googleapis.com/auth/sqlservice.admin"]]
    finally:
        connector.close()
