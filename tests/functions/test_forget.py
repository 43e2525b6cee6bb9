"""`forget EMAIL` (issue 23 item 4) through the console and the CLI: the email is nowhere
afterwards (every table, event, outbox row, log line), open sessions are cancelled with their
store action, verified-customer records go, and only that an erasure happened is recorded."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

from sqlalchemy import text

from shared.db.schema import metadata
from tests.fakes.http_server import FakeHttpServer, Reply
from tests.functions.conftest import client_for, count
from tests.functions.test_operator_console import as_alice, console, csrf_of, keys  # noqa: F401 (fixtures)
from tests.functions.test_subscribers import deliver
from tests.functions.test_verify_once import approve, assert_normal, key_of, record_count, send_emails
from tests.functions.test_webhook_intake import post_order, status_of


def everywhere(db, needle: str) -> list[str]:
    """Every table (each row as text: events' data and outbox payloads included) holding `needle`."""
    found = []
    with db.read() as conn:
        for table in metadata.sorted_tables:
            hits = conn.execute(text(f"SELECT count(*) FROM {table.name} t WHERE lower(t::text) LIKE :n"),
                                {"n": f"%{needle.lower()}%"}).scalar_one()
            if hits:
                found.append(table.name)
    return found


def test_forget_from_the_console_erases_the_email_everywhere_and_cancels_open_sessions(
        app_env, console, keys, db, captured_logs):  # noqa: F811
    email, customer = f"Forget-{uuid.uuid4().hex[:8]}@Example.com", f"cust-{uuid.uuid4().hex[:8]}"
    intake = client_for("webhook_intake")
    closed, reused, open_, guest = (f"order-{uuid.uuid4().hex[:10]}" for _ in range(4))
    assert post_order(intake, closed, customerEmail=email, customerId=customer).json["status"] == "accepted"
    approve(intake, db, closed)
    assert post_order(intake, reused, customerEmail=email, customerId=customer).json["status"] == "accepted"
    assert status_of(db, reused) == "verified"
    assert post_order(intake, open_, customerEmail=email.lower(), customerId="another-account").json["status"] \
        == "accepted"
    assert post_order(intake, guest, customerEmail=email).json["status"] == "accepted"
    assert record_count(db, key_of("orders", customer, email)) == 1
    assert everywhere(db, email) == ["verification_sessions"]  # where the email lives

    page = console.get("/forget", headers=as_alice(keys))
    assert page.status_code == 200
    done = console.post("/forget", data={"csrf": csrf_of(page.get_data(as_text=True)), "email": email.upper()},
                        headers=as_alice(keys))
    assert done.status_code == 200
    assert "4 session(s) erased, 2 open session(s) cancelled, 1 verified-customer record(s) removed" \
        in done.get_data(as_text=True)

    # Nothing holds the email any more: no table, event, outbox row or log line.
    assert everywhere(db, email) == []
    assert email.lower() not in captured_logs.getvalue().lower()
    assert record_count(db, key_of("orders", customer, email)) == 0
    assert count(db, "SELECT count(*) FROM verification_sessions WHERE order_id IN (:a, :b, :c, :d) "
                     "AND erased_at IS NOT NULL AND customer_key IS NULL AND customer_id IS NULL",
                 a=closed, b=reused, c=open_, d=guest) == 4
    # Open sessions closed `cancelled`, reason `erased`, timers cancelled, the store action written.
    for key in (open_, guest):
        assert status_of(db, key) == "cancelled"
        with db.read() as conn:
            reasons = conn.execute(text("SELECT data->>'reason' FROM event_log WHERE order_id = :o "
                                        "AND type IN ('order.cancelled', 'refund.requested') ORDER BY id"),
                                   {"o": key}).scalars().all()
        assert reasons == ["erased", "erased"]
        assert count(db, "SELECT count(*) FROM countdown_timers WHERE order_id = :o AND state = 'scheduled'",
                     o=key) == 0
        assert count(db, "SELECT count(*) FROM outbox WHERE order_id = :o AND payload->>'topic' = 'order-actions'",
                     o=key) == 1
    assert (status_of(db, closed), status_of(db, reused)) == ("verified", "verified")  # closed: only erased
    # That an erasure happened is recorded (operator, time, counts), not what.
    with db.read() as conn:
        [(actor, data)] = conn.execute(text("SELECT actor, data FROM event_log WHERE type = 'customer.erased' "
                                            "AND occurred_at > now() - interval '1 minute' "
                                            "AND actor = 'operator:alice@example.com' ORDER BY id DESC LIMIT 1"))
    assert data == {"sessions": 4, "cancelled": 2, "records": 1}

    # The store action runs: the refund goes to the store's API with reason `erased`.
    with db.read() as conn:
        [action] = conn.execute(text("SELECT payload->'data' FROM outbox WHERE order_id = :o "
                                     "AND payload->>'topic' = 'order-actions'"), {"o": open_}).scalars()
    with FakeHttpServer(Reply(200, {"status": "refunded"})) as api:
        app_env(REFUND_BACKEND="http", REFUND_API_URL=api.url + "/refunds", REFUND_API_TOKEN="tok")
        refunds = client_for("request_refund", "cloudevent")
        assert deliver(refunds, "order-actions", action, key=f"{open_}:refund",
                       order_id=open_).status_code == 200
    [call] = api.requests
    assert json.loads(call.body) == {"orderId": open_, "source": "orders", "reason": "erased"}

    # A link email still queued for an erased session goes nowhere.
    emails = client_for("send_customer_email", "cloudevent")
    send_emails(db, emails, guest)
    assert count(db, "SELECT count(*) FROM email_sends WHERE order_id = :o AND state = 'sent'", o=guest) == 0
    assert everywhere(db, email) == []

    # A new order from the same email afterwards opens a normal session.
    again = f"order-{uuid.uuid4().hex[:10]}"
    assert post_order(intake, again, customerEmail=email, customerId=customer).json["status"] == "accepted"
    assert_normal(db, again)


def test_forget_from_the_cli_prints_counts_never_the_email(intake, db, capsys):
    from shared import bootstrap
    from shared.operator import main as cli

    email = f"cli-{uuid.uuid4().hex[:8]}@example.com"
    order = f"order-{uuid.uuid4().hex[:10]}"
    assert post_order(intake, order, customerEmail=email, customerId="c-cli").json["status"] == "accepted"
    assert cli(["--by", "bob", "--json", "forget", email]) == 0
    out = capsys.readouterr().out
    assert json.loads(out) == {"sessions": 1, "cancelled": 1, "records": 0} and email not in out
    assert everywhere(db, email) == []
    assert cli(["forget", "not an email"]) == 1
    assert "email" in capsys.readouterr().err
    bootstrap.reset()


def test_forget_erases_the_operators_notes_on_the_customers_sessions(intake, db, capsys):
    """Issue 24: an operator's note may name the customer; it goes with them. Another
    customer's note stays."""
    from shared import bootstrap
    from shared.handlers.transitions import operator_action
    from shared.operator import main as cli

    now = datetime.now(timezone.utc)
    email, other_email = (f"note-{uuid.uuid4().hex[:8]}@example.com" for _ in range(2))
    order, other = (f"order-{uuid.uuid4().hex[:10]}" for _ in range(2))
    for key, address in ((order, email), (other, other_email)):
        assert post_order(intake, key, customerEmail=address).json["status"] == "accepted"
        assert operator_action(db, key, "cancel", operator="alice", now=now, reason="other",
                               note=f"{address} asked on the phone").accepted
    assert set(everywhere(db, email)) == {"operator_notes", "verification_sessions"}
    assert cli(["--by", "bob", "forget", email]) == 0
    capsys.readouterr()
    assert everywhere(db, email) == []
    assert count(db, "SELECT count(*) FROM operator_notes WHERE order_id = :o", o=order) == 0
    assert count(db, "SELECT count(*) FROM operator_notes WHERE order_id = :o", o=other) == 1
    bootstrap.reset()
