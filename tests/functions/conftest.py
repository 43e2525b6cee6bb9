"""Entry points through functions-framework's own app, against the session's PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import functions_framework
import pytest
from sqlalchemy import text

from shared import bootstrap
from tests.conftest import base_env

MAIN = str(Path(__file__).resolve().parents[2] / "main.py")


@pytest.fixture
def app_env(monkeypatch, database_url, db):
    """Apply an environment for the function under test; returns a setter for overrides.

    Depends on `db`, which brings the session's schema up to date (functions never migrate)."""
    def apply(**overrides: str) -> None:
        for key, value in base_env(database_url, **overrides).items():
            monkeypatch.setenv(key, value)
        bootstrap.reset()

    apply()
    yield apply
    bootstrap.reset()


def client_for(target: str, signature_type: str = "http"):
    return functions_framework.create_app(target, MAIN, signature_type).test_client()


@pytest.fixture
def intake(app_env):
    return client_for("webhook_intake")


def count(db, sql: str, **params) -> int:
    with db.read() as conn:
        return conn.execute(text(sql), params).scalar_one()


def rows_for_order(db, order_id: str) -> dict[str, int]:
    """How many rows each table holds for one order (no row may appear for a rejected input)."""
    return {
        table: count(db, f"SELECT count(*) FROM {table} WHERE order_id = :o", o=order_id)
        for table in ("verification_sessions", "webhook_events", "countdown_timers", "event_log", "outbox")
    }
