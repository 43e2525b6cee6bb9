"""`webhook_intake` over functions-framework's app, with a real PostgreSQL behind it."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode

import pytest
from standardwebhooks.webhooks import Webhook

from devstack.signing import lightspeed_headers, veriff_body, veriff_headers
from shared.config import DatabaseSettings
from shared.db.database import Database
from shared.db.engine import make_engine
from shared.db.migrate import ensure_schema
from tests.conftest import LIGHTSPEED_SECRET, ORDER_SECRET, VERIFF_API_KEY, VERIFF_SECRET, base_env
from tests.functions.conftest import count, rows_for_order
from tests.sessions import bind_provider_session

NOTHING = {"verification_sessions": 0, "webhook_events": 0, "countdown_timers": 0,
           "event_log": 0, "outbox": 0}


def order_request(order_id: str, *, msg_id: str | None = None, secret: str = ORDER_SECRET,
                  at: datetime | None = None, body: bytes | None = None, **fields):
    body = body if body is not None else json.dumps(
        {"event": "order.created", "orderId": order_id, "customerEmail": "buyer@example.com", **fields}
    ).encode()
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    at = at or datetime.now(timezone.utc)
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, at, body.decode("utf-8", "replace")),
    }
    return body, headers


def post_order(intake, order_id, **kwargs):
    body, headers = order_request(order_id, **kwargs)
    return intake.post("/webhooks/orders", data=body, headers=headers, content_type="application/json")


def post_veriff(intake, order_id, code, **kwargs):
    body = veriff_body(order_id, code, **kwargs)
    return intake.post("/webhooks/veriff", data=body, headers=veriff_headers(VERIFF_SECRET, VERIFF_API_KEY, body))


# ---- accepted inputs ----------------------------------------------------------


def test_order_opens_session_with_timers_events_and_outbox(intake, db, order_id):
    response = post_order(intake, order_id)
    assert response.status_code == 200, response.json
    assert response.json["status"] == "accepted" and response.json["orderId"] == order_id
    assert rows_for_order(db, order_id) == {
        "verification_sessions": 1, "webhook_events": 1,
        "countdown_timers": 2,  # one reminder (24h) + the deadline
        "event_log": 2,  # order.received, verification.requested
        "outbox": 5,  # 2 event messages, 1 link email, 2 task creations
    }
    assert count(db, "SELECT count(*) FROM verification_sessions WHERE order_id = :o AND status = 'pending' "
                     "AND deadline - ordered_at = interval '72 hours'", o=order_id) == 1


def test_deadline_counts_from_receipt_not_the_orders_own_time(intake, db, order_id):
    # Changed by issue 10 item 6: the window starts when the link can first be sent.
    created = datetime.now(timezone.utc) - timedelta(days=2)
    response = post_order(intake, order_id, createdAt=created.isoformat())
    assert response.status_code == 200 and response.json["status"] == "accepted"
    assert count(db, "SELECT count(*) FROM verification_sessions WHERE order_id = :o "
                     "AND deadline > now() + interval '71 hours'", o=order_id) == 1


def test_same_event_twice_is_duplicate(intake, db, order_id):
    body, headers = order_request(order_id)
    first = intake.post("/webhooks/orders", data=body, headers=headers, content_type="application/json")
    second = intake.post("/webhooks/orders", data=body, headers=headers, content_type="application/json")
    assert (first.json["status"], second.json["status"]) == ("accepted", "duplicate")
    assert rows_for_order(db, order_id)["verification_sessions"] == 1
    assert count(db, "SELECT deliveries FROM webhook_events WHERE order_id = :o", o=order_id) == 2
    assert rows_for_order(db, order_id)["outbox"] == 5


def test_new_event_id_for_known_order_records_duplicate(intake, db, order_id):
    assert post_order(intake, order_id).json["status"] == "accepted"
    again = post_order(intake, order_id)
    assert again.json["status"] == "duplicate"
    counts = rows_for_order(db, order_id)
    assert counts["verification_sessions"] == 1 and counts["countdown_timers"] == 2
    assert count(db, "SELECT count(*) FROM event_log WHERE order_id = :o AND type = 'order.duplicate'",
                 o=order_id) == 1


def test_other_event_types_are_ignored(intake, db, order_id):
    response = post_order(intake, order_id, body=json.dumps({"event": "order.updated", "orderId": order_id}).encode())
    assert response.status_code == 200 and response.json["status"] == "ignored"
    assert rows_for_order(db, order_id) == NOTHING


# ---- signatures: 401 and no row ------------------------------------------------


@pytest.mark.parametrize("case", ["missing", "wrong", "malformed", "wrong_secret", "stale", "future"])
def test_bad_order_signatures_are_401_and_store_nothing(intake, db, order_id, case):
    other_secret = "whsec_" + base64.b64encode(b"another-secret-of-32-bytes-long!").decode()
    at = datetime.now(timezone.utc)
    body, headers = order_request(
        order_id, secret=other_secret if case == "wrong_secret" else ORDER_SECRET,
        at=datetime.fromtimestamp(at.timestamp() + {"stale": -400, "future": 400}.get(case, 0), timezone.utc),
    )
    if case == "missing":
        del headers["webhook-signature"]
    elif case == "wrong":
        headers["webhook-signature"] = "v1," + base64.b64encode(b"x" * 32).decode()
    elif case == "malformed":
        headers["webhook-signature"] = "not a signature"
    response = intake.post("/webhooks/orders", data=body, headers=headers, content_type="application/json")
    assert response.status_code == 401
    assert response.json["code"] == "bad_signature" and "requestId" in response.json
    assert rows_for_order(db, order_id) == NOTHING
    assert count(db, "SELECT count(*) FROM webhook_events WHERE event_id = :e",
                 e=headers["webhook-id"]) == 0


@pytest.mark.parametrize("header", [None, "00" * 32, "not-hex"])
def test_bad_veriff_signature_is_401(intake, db, order_id, header):
    post_order(intake, order_id)
    before = rows_for_order(db, order_id)
    body = veriff_body(order_id, 9001)
    headers = {"X-AUTH-CLIENT": VERIFF_API_KEY}
    if header:
        headers["X-HMAC-SIGNATURE"] = header
    response = intake.post("/webhooks/veriff", data=body, headers=headers, content_type="application/json")
    assert response.status_code == 401
    assert rows_for_order(db, order_id) == before


def test_wrong_veriff_api_key_is_401(intake, db, order_id):
    body = veriff_body(order_id, 9001)
    headers = veriff_headers(VERIFF_SECRET, "someone-else", body)
    assert intake.post("/webhooks/veriff", data=body, headers=headers).status_code == 401


def test_bad_lightspeed_signature_is_401(intake, db, order_id):
    body = urlencode({"type": "sale.update", "payload": json.dumps(
        {"id": order_id, "status": "CLOSED", "customer": {"email": "a@example.com"}})}).encode()
    headers = lightspeed_headers("wrong-secret", body)
    assert intake.post("/webhooks/lightspeed", data=body, headers=headers).status_code == 401
    assert rows_for_order(db, order_id) == NOTHING


# ---- each error status of DESIGN.md section 4 ---------------------------------


def test_unparseable_signed_body_is_400(intake, db, order_id):
    response = post_order(intake, order_id, body=b"{not json")
    assert response.status_code == 400 and response.json["code"] == "unparseable"
    assert rows_for_order(db, order_id) == NOTHING


def test_missing_field_is_422_naming_it(intake, db, order_id):
    response = post_order(intake, order_id, body=json.dumps({"event": "order.created", "orderId": order_id}).encode())
    assert response.status_code == 422
    assert response.json["field"] == "customerEmail"
    assert rows_for_order(db, order_id) == NOTHING


def test_wrong_content_type_is_415(intake, db, order_id):
    body, headers = order_request(order_id)
    response = intake.post("/webhooks/orders", data=body, headers=headers, content_type="text/plain")
    assert response.status_code == 415
    assert rows_for_order(db, order_id) == NOTHING


def test_body_over_limit_is_413(app_env, db, order_id):
    app_env(MAX_BODY_BYTES="200")
    from tests.functions.conftest import client_for
    intake = client_for("webhook_intake")
    response = post_order(intake, order_id, customerId="x" * 300)
    assert response.status_code == 413
    assert rows_for_order(db, order_id) == NOTHING


def test_database_unreachable_is_503(app_env, db, order_id):
    from devstack.postgres import free_port
    from tests.functions.conftest import client_for
    app_env(DATABASE_URL=f"postgresql+pg8000://postgres@127.0.0.1:{free_port()}/verification")
    response = post_order(client_for("webhook_intake"), order_id)
    assert response.status_code == 503
    assert rows_for_order(db, order_id) == NOTHING


def test_error_bodies_name_nothing_of_ours_the_log_does(app_env, db, order_id, caplog):
    """A stranger learns that the service is unavailable, not which part, variable or version."""
    from devstack.postgres import free_port
    from tests.functions.conftest import client_for
    app_env(DATABASE_URL=f"postgresql+pg8000://postgres@127.0.0.1:{free_port()}/verification")
    response = post_order(client_for("webhook_intake"), order_id)
    assert response.status_code == 503
    assert set(response.json) == {"error", "requestId"} and response.json["error"] == "temporarily unavailable"
    assert "unavailable: database unavailable" in caplog.text  # the detail is for the log

    app_env(VERIFF_SHARED_SECRET="")
    response = post_order(client_for("webhook_intake"), order_id)
    assert response.status_code == 503 and response.json == {"error": "temporarily unavailable",
                                                              "requestId": response.json["requestId"]}
    assert "VERIFF_SHARED_SECRET" not in response.get_data(as_text=True)
    assert "VERIFF_SHARED_SECRET" in caplog.text


@pytest.mark.parametrize("path,content_type", [
    ("/webhooks/orders", "application/json"), ("/webhooks/veriff", "application/json"),
    ("/webhooks/lightspeed", "application/x-www-form-urlencoded")])
def test_an_unsigned_request_is_refused_before_any_database_work(app_env, path, content_type, monkeypatch):
    """The signature is checked first: with no database to reach, an unsigned or badly signed
    request is still 401, and the instance built no container (no pool, no schema check)."""
    from devstack.postgres import free_port
    from shared import bootstrap
    from tests.functions.conftest import client_for
    app_env(DATABASE_URL=f"postgresql+pg8000://postgres@127.0.0.1:{free_port()}/verification")
    built = []
    monkeypatch.setattr(bootstrap, "build", lambda *a, **k: built.append(1) or pytest.fail("container built"))
    intake = client_for("webhook_intake")
    body = b'{"event": "order.created", "orderId": "x"}' if "json" in content_type else b"type=sale.update"
    unsigned = intake.post(path, data=body, content_type=content_type)
    badly_signed = intake.post(path, data=body, content_type=content_type, headers={
        "webhook-id": "msg_1", "webhook-timestamp": str(int(time.time())), "webhook-signature": "v1,AAAA",
        "X-AUTH-CLIENT": VERIFF_API_KEY, "X-HMAC-SIGNATURE": "00" * 32, "X-Signature": "sha256=" + "00" * 32})
    assert (unsigned.status_code, badly_signed.status_code) == (401, 401)
    assert built == []


def test_unknown_route_is_404_json_and_get_is_405(intake):
    response = intake.get("/nope")
    assert response.status_code == 404 and response.is_json and response.json["error"]
    assert intake.get("/webhooks/orders").status_code == 405


def test_lightspeed_route_disabled_without_its_secret(app_env, order_id):
    from tests.functions.conftest import client_for
    app_env(LIGHTSPEED_CLIENT_SECRET="")
    response = client_for("webhook_intake").post(
        "/webhooks/lightspeed", data=b"type=sale.update", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 404
    assert "LIGHTSPEED_CLIENT_SECRET" not in response.get_data(as_text=True)  # the log names it, not the answer


# ---- headers ---------------------------------------------------------------------


def test_request_id_is_echoed_or_generated_and_security_headers_set(intake, order_id):
    given = intake.get("/healthz", headers={"X-Request-ID": "req-123"})
    assert given.headers["X-Request-ID"] == "req-123" and given.json["requestId"] == "req-123"
    generated = intake.get("/healthz")
    assert len(generated.headers["X-Request-ID"]) == 32
    hostile = intake.get("/healthz", headers={"X-Request-ID": "bad id <script>"})
    assert hostile.headers["X-Request-ID"] != "bad id <script>"
    for name in ("X-Content-Type-Options", "X-Frame-Options", "Content-Security-Policy", "Cache-Control"):
        assert name in given.headers
    assert post_order(intake, order_id).headers["X-Content-Type-Options"] == "nosniff"


# ---- Veriff decisions and Lightspeed over HTTP --------------------------------------


def status_of(db, order_id):
    from sqlalchemy import text
    with db.read() as conn:
        return conn.execute(text("SELECT status FROM verification_sessions WHERE order_id = :o"),
                            {"o": order_id}).scalar_one_or_none()


def test_approval_verifies_and_cancels_timers(intake, db, order_id):
    post_order(intake, order_id)
    bind_provider_session(db, order_id, f"v1-{order_id}")
    response = post_veriff(intake, order_id, 9001, verification_id=f"v1-{order_id}")
    assert response.json["status"] == "accepted"
    assert status_of(db, order_id) == "verified"
    assert count(db, "SELECT count(*) FROM countdown_timers WHERE order_id = :o AND state = 'cancelled'",
                 o=order_id) == 2
    assert count(db, "SELECT count(*) FROM outbox WHERE order_id = :o AND kind = 'task.delete'", o=order_id) == 2
    again = post_veriff(intake, order_id, 9001, verification_id=f"v1-{order_id}")
    assert again.json["status"] == "duplicate"


def test_late_decision_after_terminal_is_recorded_not_applied(intake, db, order_id):
    post_order(intake, order_id)
    bind_provider_session(db, order_id, f"v1-{order_id}")
    post_veriff(intake, order_id, 9102, verification_id=f"v1-{order_id}", decision_time="2026-11-29T10:00:00Z")
    late = post_veriff(intake, order_id, 9001, verification_id=f"v1-{order_id}", decision_time="2026-11-29T11:00:00Z")
    assert late.json["status"] == "ignored"
    assert status_of(db, order_id) == "declined"
    assert count(db, "SELECT count(*) FROM event_log WHERE order_id = :o AND type = "
                     "'verification.decision_ignored'", o=order_id) == 1


def test_decision_for_unknown_order_is_ignored(intake, db, order_id):
    response = post_veriff(intake, order_id, 9001)
    assert response.status_code == 200 and response.json["status"] == "ignored"
    assert status_of(db, order_id) is None


def test_lightspeed_paid_then_voided(intake, db, order_id):
    def send(status, version):
        body = urlencode({"type": "sale.update", "payload": json.dumps(
            {"id": order_id, "status": status, "version": version,
             "customer": {"email": "a@example.com"}})}).encode()
        return intake.post("/webhooks/lightspeed", data=body, headers=lightspeed_headers(LIGHTSPEED_SECRET, body))

    assert send("CLOSED", 1).json["status"] == "accepted"
    assert status_of(db, f"lightspeed:{order_id}") == "pending"
    assert send("VOIDED", 2).json["status"] == "accepted"
    assert status_of(db, f"lightspeed:{order_id}") == "cancelled"
    assert send("VOIDED", 2).json["status"] == "duplicate"


# ---- health ---------------------------------------------------------------------


def test_healthz_does_no_io(app_env):
    from devstack.postgres import free_port
    from tests.functions.conftest import client_for
    app_env(DATABASE_URL=f"postgresql+pg8000://postgres@127.0.0.1:{free_port()}/verification")
    assert client_for("webhook_intake").get("/healthz").status_code == 200


def test_the_public_intake_has_no_deep_health(app_env):
    from tests.functions.conftest import client_for
    assert client_for("webhook_intake").get("/health").status_code == 404


def test_health_behind_iam_follows_the_database_down_and_back(app_env):
    import shutil
    import tempfile
    from pathlib import Path

    from devstack.postgres import Postgres, free_port
    from tests.functions.conftest import client_for
    data_dir = Path(tempfile.mkdtemp(prefix="verification-pg-"))
    server = Postgres(data_dir, free_port()).start()
    try:
        app_env(DATABASE_URL=server.url)
        client = client_for("sweep")
        owner = Database(make_engine(DatabaseSettings.from_env(base_env(server.url))))
        ensure_schema(owner)  # the deploy's schema step
        owner.engine.dispose()
        up = client.get("/health")
        assert up.status_code == 200 and up.json["checks"]["database"] == "ok"
        server.stop("immediate")
        down = client.get("/health")
        assert down.status_code == 503 and down.json["failing"] == ["database"]
        server.start()
        deadline = time.monotonic() + 10
        while (back := client.get("/health")).status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert back.status_code == 200
    finally:
        server.stop("immediate")
        shutil.rmtree(data_dir, ignore_errors=True)


def set_session(db, order_id, **columns):
    from sqlalchemy import text
    assignments = ", ".join(f"{name} = :{name}" for name in columns)
    with db.transaction() as conn:
        conn.execute(text(f"UPDATE verification_sessions SET {assignments} WHERE order_id = :o"),
                     {"o": order_id, **columns})


@pytest.mark.parametrize("start, code, status, end, event, link_cleared", [
    ("pending", 9001, "approved", "verified", "verification.approved", False),
    ("in_review", 9001, "approved", "verified", "verification.approved", False),
    ("pending", 9102, "declined", "declined", "verification.declined", False),
    ("in_review", 9102, "declined", "declined", "verification.declined", False),
    ("pending", 9103, "resubmission_requested", "pending", "verification.resubmission_requested", True),
    ("in_review", 9103, "resubmission_requested", "pending", "verification.resubmission_requested", True),
    ("pending", 9104, "expired", "pending", "verification.session_expired", True),
    ("pending", 9104, "abandoned", "pending", "verification.session_expired", True),
    ("pending", 9121, "review", "in_review", "verification.in_review", False),
    ("in_review", 9104, "expired", "in_review", "verification.decision_ignored", False),
    ("expired", 9001, "approved", "expired", "verification.decision_ignored", False),
    ("cancelled", 9121, "review", "cancelled", "verification.decision_ignored", False),
])
def test_decision_table(intake, db, order_id, start, code, status, end, event, link_cleared):
    """DESIGN.md section 3, one row per case, over HTTP."""
    post_order(intake, order_id)
    bind_provider_session(db, order_id, f"vs-{order_id}")
    set_session(db, order_id, status=start)
    response = post_veriff(intake, order_id, code, status=status, verification_id=f"vs-{order_id}")
    assert response.status_code == 200
    assert response.json["status"] == ("ignored" if event.endswith("ignored") else "accepted")
    assert status_of(db, order_id) == end
    assert count(db, "SELECT count(*) FROM event_log WHERE order_id = :o AND type = :t", o=order_id, t=event) == 1
    cleared = count(db, "SELECT count(*) FROM verification_sessions WHERE order_id = :o AND provider_url IS NULL",
                    o=order_id)
    assert cleared == (1 if link_cleared else 0)
    refunds = count(db, "SELECT count(*) FROM outbox WHERE order_id = :o AND payload->>'topic' = 'order-actions'",
                    o=order_id)
    assert refunds == (1 if end == "declined" else 0)
