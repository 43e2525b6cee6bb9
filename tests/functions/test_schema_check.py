"""Functions never migrate: one that finds the schema older than its code refuses to serve,
naming both versions and the step that fixes it, until the schema step has run."""

from __future__ import annotations

from sqlalchemy import text

from shared.db.database import Database
from shared.db.engine import make_engine
from shared.db.migrate import LATEST, ensure_schema
from shared.config import DatabaseSettings
from tests.conftest import base_env
from tests.functions.conftest import client_for


def test_an_older_schema_is_refused_until_the_schema_step_runs(app_env, fresh_database, caplog):
    app_env(DATABASE_URL=fresh_database)
    database = Database(make_engine(DatabaseSettings.from_env(base_env(fresh_database))))
    try:
        client = client_for("sweep")
        empty = client.get("/health")
        assert empty.status_code == 503
        assert empty.get_json()["checks"]["database"] == "failing"
        with database.read() as conn:  # nothing was created by the function
            assert conn.execute(text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")).scalar() == 0

        timer = client_for("timer_expiry").post("/", json={"v": 1, "order_id": "o-1", "kind": "deadline",
                                                           "reminder_index": 0, "deadline_version": 1})
        assert timer.status_code == 503
        body = timer.get_json()
        assert body["error"] == "temporarily unavailable"  # the versions and the command: in the log only
        assert f"needs {LATEST}" in caplog.text and "shared.db.upgrade" in caplog.text

        assert ensure_schema(database) == LATEST  # the deploy's schema step
        again = client_for("timer_expiry").post("/", json={"v": 1, "order_id": "o-1", "kind": "deadline",
                                                           "reminder_index": 0, "deadline_version": 1})
        assert again.status_code == 200 and again.get_json()["status"] == "ignored"
    finally:
        database.engine.dispose()
