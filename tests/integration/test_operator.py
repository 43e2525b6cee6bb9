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


def test_a_resent_link_is_a_new_email_after_the_first_link_row_was_purged(db, settings, order_id):
    """Delivered outbox rows go after REPLAY_RETENTION (8 d) while a session may stay open
    longer (extended, in review); the email claims stay, so a reused index is never sent."""
    from datetime import timedelta

    from shared.db import retention, store
    from shared.handlers import operator

    placed = NOW - timedelta(days=10)
    intake.place_order(db, settings, OrderPlaced("orders", f"m-{order_id}", order_id, "a@example.com"), now=placed)
    assert store.claim_email(db, order_id, "link", 0, 60) == "claimed"  # the first link email was sent
    with db.transaction() as conn:
        conn.execute(text("UPDATE email_sends SET state = 'sent', sent_at = :t WHERE order_id = :o"),
                     {"o": order_id, "t": placed})
        conn.execute(text("UPDATE outbox SET delivered_at = :t WHERE order_id = :o"), {"o": order_id, "t": placed})
    while retention.purge_batch(db, retention.DELIVERED_OUTBOX, NOW - settings.retention.replay, 1000):
        pass
    assert operator.resend_link(db, order_id, operator="alice", now=NOW).status == "accepted"
    with db.read() as conn:
        keys = conn.execute(text("SELECT payload->'attributes'->>'message_key' FROM outbox WHERE order_id = :o "
                                 "AND payload->>'topic' = 'customer-emails'"), {"o": order_id}).scalars().all()
    assert keys == [f"{order_id}:link:1"]
    assert store.claim_email(db, order_id, "link", 1, 60) == "claimed"  # a new email, not "already sent"


def test_two_operators_resending_at_once_send_one_new_link(db, settings, order_id):
    import threading

    from shared.handlers import operator

    intake.place_order(db, settings, OrderPlaced("orders", f"m-{order_id}", order_id, "a@example.com"), now=NOW)
    start, results = threading.Barrier(2), []

    def resend(name: str) -> None:
        start.wait()
        results.append(operator.resend_link(db, order_id, operator=name, now=datetime.now(timezone.utc)).status)

    threads = [threading.Thread(target=resend, args=(name,)) for name in ("alice", "bob")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["accepted", "ignored"]
    with db.read() as conn:
        links = conn.execute(text("SELECT count(*) FROM outbox WHERE order_id = :o "
                                  "AND payload->>'topic' = 'customer-emails'"), {"o": order_id}).scalar()
    assert links == 2  # the first link and one resend
