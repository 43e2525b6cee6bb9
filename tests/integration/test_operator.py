"""Operator actions: same transitions as the webhooks, with the operator recorded."""

from datetime import datetime, timezone

from sqlalchemy import text

from shared.domain.messages import OrderPlaced
from shared.handlers import intake

NOW = datetime.now(timezone.utc)


def test_manual_verify_and_cancel_record_the_operator(db, settings, order_id):
    intake.place_order(db, settings, OrderPlaced("orders", f"m-{order_id}", order_id, "a@example.com"), now=NOW)
    assert intake.operator_action(db, order_id, "verify", operator="alice", now=NOW).status == "accepted"
    assert intake.operator_action(db, order_id, "cancel", operator="bob", now=NOW).status == "ignored"
    with db.read() as conn:
        status = conn.execute(text("SELECT status FROM verification_sessions WHERE order_id = :o"),
                              {"o": order_id}).scalar()
        rows = conn.execute(text("SELECT type, actor FROM event_log WHERE order_id = :o AND actor LIKE 'operator:%' "
                                 "ORDER BY id"), {"o": order_id}).all()
    assert status == "verified"
    assert [tuple(r) for r in rows] == [("verification.approved", "operator:alice"),
                                        ("verification.decision_ignored", "operator:bob")]
