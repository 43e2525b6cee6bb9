"""`timer_expiry` and `sweep` through functions-framework, as Cloud Tasks and Scheduler call them."""

from __future__ import annotations

import json

import pytest

from sqlalchemy import text

from devstack.postgres import free_port
from shared import bootstrap
from tests.functions.conftest import client_for
from tests.functions.test_webhook_intake import post_order

CLOUD_TASKS_HEADERS = {"X-CloudTasks-TaskName": "t-1", "X-CloudTasks-QueueName": "verification-timers",
                       "X-CloudTasks-TaskRetryCount": "2", "X-CloudTasks-TaskExecutionCount": "2"}


def fire(client, body: bytes):
    return client.post("/", data=body, headers=CLOUD_TASKS_HEADERS, content_type="application/json")


def test_poison_task_is_acknowledged(app_env):
    client = client_for("timer_expiry")
    for body in (b"not json", b"[]", json.dumps({"v": 9}).encode(),
                 json.dumps({"v": 1, "order_id": "x", "kind": "party", "reminder_index": 0,
                             "deadline_version": 1}).encode()):
        response = fire(client, body)
        assert response.status_code == 200 and response.json["status"] == "ignored"


def test_stale_timer_is_2xx_and_changes_nothing(app_env, db, order_id):
    post_order(client_for("webhook_intake"), order_id)
    response = fire(client_for("timer_expiry"), json.dumps(
        {"v": 1, "order_id": order_id, "kind": "deadline", "reminder_index": 0, "deadline_version": 1}).encode())
    assert response.status_code == 200 and response.json["status"] == "ignored"
    with db.read() as conn:
        assert conn.execute(text("SELECT status FROM verification_sessions WHERE order_id = :o"),
                            {"o": order_id}).scalar() == "pending"


def test_reminder_through_the_function_relays_its_email(app_env, db, order_id):
    post_order(client_for("webhook_intake"), order_id)
    bootstrap.reset()
    response = fire(client_for("timer_expiry"), json.dumps(
        {"v": 1, "order_id": order_id, "kind": "reminder", "reminder_index": 0, "deadline_version": 1}).encode())
    assert response.status_code == 200 and response.json["status"] == "accepted"
    with db.read() as conn:
        rows = conn.execute(text("SELECT payload->'data'->>'kind', delivered_at IS NULL, attempts FROM outbox "
                                 "WHERE order_id = :o AND payload->>'topic' = 'customer-emails' "
                                 "AND payload->'data'->>'kind' = 'reminder'"), {"o": order_id}).all()
    # EVENTS_BACKEND=local with no subscriber configured: the relay tried once and kept the row.
    assert len(rows) == 1 and rows[0][1] is True and rows[0][2] == 1


def test_timer_with_database_down_is_503_so_cloud_tasks_retries(app_env):
    app_env(DATABASE_URL=f"postgresql+pg8000://postgres@127.0.0.1:{free_port()}/verification")
    response = fire(client_for("timer_expiry"), json.dumps(
        {"v": 1, "order_id": "o", "kind": "deadline", "reminder_index": 0, "deadline_version": 1}).encode())
    assert response.status_code == 503


def test_sweep_reports_counts(app_env):
    response = client_for("sweep").post("/", json={})
    assert response.status_code == 200
    assert set(response.json) >= {"expired", "relayed", "relayFailures", "deadLetters", "requestId"}
    assert all(isinstance(response.json[k], int) for k in ("expired", "relayed", "relayFailures", "deadLetters"))


def test_only_what_scheduler_and_tasks_send_reaches_the_sweep_and_the_timers(app_env, monkeypatch):
    """sweep: POST / (Cloud Scheduler) and GET /health; timer_expiry: POST / (Cloud Tasks).
    Any other method or path is 404/405 and runs nothing (a GET used to run a full sweep)."""
    from shared.handlers import timers

    swept = []
    monkeypatch.setattr(timers, "expire_overdue", lambda *a, **k: swept.append(1) or pytest.fail("swept"))
    handled = []
    monkeypatch.setattr(bootstrap, "handle", lambda *a, **k: handled.append(1) or pytest.fail("handled"))
    sweep, timer = client_for("sweep"), client_for("timer_expiry")
    body = json.dumps({"v": 1, "order_id": "o", "kind": "deadline", "reminder_index": 0, "deadline_version": 1})
    for method in ("GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"):
        assert sweep.open("/", method=method).status_code == 405, method
        assert timer.open("/", method=method, data=body, content_type="application/json").status_code == 405, method
    for method in ("POST", "PUT", "DELETE"):
        assert sweep.open("/health", method=method).status_code == 405, method
    for path in ("/anything", "/health/x", "/webhooks/orders"):
        assert sweep.post(path, json={}).status_code == 404, path
        assert sweep.get(path).status_code == 404, path
        assert fire_at(timer, path, body).status_code == 404, path
    assert swept == [] and handled == []


def fire_at(client, path: str, body: str):
    return client.post(path, data=body, headers=CLOUD_TASKS_HEADERS, content_type="application/json")
