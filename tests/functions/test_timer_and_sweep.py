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


# ---- the sweep's re-drive of a lost refund request, by what the transition owed -------------------


def refund_requests(db, order_id: str, after: int = 0) -> list[dict]:
    """The refund request messages written for the order (outbox rows past id `after`)."""
    with db.read() as conn:
        return [r[0] for r in conn.execute(text(
            "SELECT payload->'data' FROM outbox WHERE order_id = :o AND id > :after "
            "AND payload->>'topic' = 'order-actions' AND payload->'data'->>'action' = 'refund' ORDER BY id"),
            {"o": order_id, "after": after})]


def last_outbox_id(db) -> int:
    with db.read() as conn:
        return conn.execute(text("SELECT coalesce(max(id), 0) FROM outbox")).scalar_one()


def open_order(intake, source: str, email: str) -> str:
    """A paid order at a source with no store connector that refunds: its session key."""
    import uuid

    from devstack.signing import lightspeed_body, lightspeed_sale
    from tests.functions.test_inbound_edges import post_lightspeed

    if source == "lightspeed":
        sale = uuid.uuid4().hex[:10]
        assert post_lightspeed(intake, lightspeed_body(lightspeed_sale(sale, "CLOSED", email=email))
                               ).json["status"] == "accepted"
        return f"lightspeed:{sale}"
    order = f"order-{uuid.uuid4().hex[:10]}"
    assert post_order(intake, order, customerEmail=email).json["status"] == "accepted"
    return order


@pytest.mark.parametrize("source", ["orders", "lightspeed"])
def test_a_lost_refund_request_of_an_erased_customers_order_is_re_driven_once_and_refunded_once(
        app_env, db, source):
    import uuid

    from shared.operator import main as cli
    from tests.fakes.http_server import FakeHttpServer, Reply
    from tests.functions.test_subscribers import deliver

    email = f"erased-{uuid.uuid4().hex[:8]}@example.com"
    key = open_order(client_for("webhook_intake"), source, email)
    assert cli(["--by", "bob", "forget", email]) == 0  # open: cancelled, reason `erased`, refund owed
    bootstrap.reset()
    [lost] = refund_requests(db, key)
    assert lost["reason"] == "erased"
    with db.transaction() as conn:  # its message was lost (relayed, never arrived), over a lease ago
        conn.execute(text("UPDATE outbox SET delivered_at = now() WHERE order_id = :o"), {"o": key})
        conn.execute(text("UPDATE verification_sessions SET refund_requested_at = refund_requested_at - "
                          "interval '1 hour', updated_at = updated_at - interval '1 hour' WHERE order_id = :o"),
                     {"o": key})

    sweep, before = client_for("sweep"), last_outbox_id(db)
    assert sweep.post("/", json={}).status_code == 200
    assert [(r["order_id"], r["reason"]) for r in refund_requests(db, key, before)] == [(key, "erased")]
    again = last_outbox_id(db)
    assert sweep.post("/", json={}).status_code == 200  # within the lease: not asked again
    assert refund_requests(db, key, again) == []

    # The re-driven request refunds the order once; the lost one arriving late asks nothing more.
    [redriven] = refund_requests(db, key, before)
    with FakeHttpServer(Reply(200, {"status": "refunded"})) as api:
        app_env(REFUND_BACKEND="http", REFUND_API_URL=api.url + "/refunds", REFUND_API_TOKEN="tok")
        refunds = client_for("request_refund", "cloudevent")
        for message in (redriven, lost, redriven):
            assert deliver(refunds, "order-actions", message, key=f"{key}:refund:{uuid.uuid4().hex[:6]}",
                           order_id=key).status_code == 200
    from shared.domain import keys
    [call] = api.requests
    assert json.loads(call.body) == {"orderId": keys.ref(key).order_id, "source": source, "reason": "erased"}
    with db.transaction() as conn:  # settled: a later sweep has nothing to re-drive, however late
        conn.execute(text("UPDATE verification_sessions SET refund_requested_at = refund_requested_at - "
                          "interval '1 day' WHERE order_id = :o"), {"o": key})
    later = last_outbox_id(db)
    assert client_for("sweep").post("/", json={}).status_code == 200
    assert refund_requests(db, key, later) == []
    with db.read() as conn:
        assert conn.execute(text("SELECT status, refund_status FROM verification_sessions WHERE order_id = :o"),
                            {"o": key}).one() == ("cancelled", "refunded")


def test_an_order_the_store_cancelled_is_never_re_driven_for_a_refund(app_env, db):
    import uuid

    from devstack.signing import lightspeed_body, lightspeed_sale
    from tests.functions.test_inbound_edges import post_lightspeed

    intake, sale = client_for("webhook_intake"), uuid.uuid4().hex[:10]
    for status in ("CLOSED", "VOIDED"):  # paid, then voided at the till: the store cancelled first
        body = lightspeed_body(lightspeed_sale(sale, status, email=f"void-{sale}@example.com"))
        assert post_lightspeed(intake, body).json["status"] == "accepted"
    key = f"lightspeed:{sale}"
    with db.transaction() as conn:  # long closed
        conn.execute(text("UPDATE verification_sessions SET updated_at = now() - interval '1 day', "
                          "decided_at = now() - interval '1 day' WHERE order_id = :o"), {"o": key})
    before = last_outbox_id(db)
    assert client_for("sweep").post("/", json={}).status_code == 200
    with db.read() as conn:
        assert conn.execute(text("SELECT status, refund_status, refund_requested_at FROM verification_sessions "
                                 "WHERE order_id = :o"), {"o": key}).one() == ("cancelled", None, None)
    assert refund_requests(db, key) == [] and refund_requests(db, key, before) == []
