"""Operator actions: same transitions as the webhooks, with the operator recorded."""

from datetime import datetime, timezone

from sqlalchemy import text

from shared.domain.messages import OrderPlaced
from shared.handlers import intake, transitions

NOW = datetime.now(timezone.utc)


def test_manual_verify_and_cancel_record_the_operator(db, settings, order_id):
    intake.place_order(db, settings, OrderPlaced("orders", f"m-{order_id}", order_id, "a@example.com"), now=NOW)
    assert transitions.operator_action(db, order_id, "verify", operator="alice", now=NOW,
                                       reason="id_checked_in_store").status == "accepted"
    assert transitions.operator_action(db, order_id, "cancel", operator="bob", now=NOW,
                                       reason="customer_request").status == "ignored"
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

    from shared.db import claims, retention

    placed = NOW - timedelta(days=10)
    intake.place_order(db, settings, OrderPlaced("orders", f"m-{order_id}", order_id, "a@example.com"), now=placed)
    assert claims.claim_email(db, order_id, "link", 0, 60) == "claimed"  # the first link email was sent
    with db.transaction() as conn:
        conn.execute(text("UPDATE email_sends SET state = 'sent', sent_at = :t WHERE order_id = :o"),
                     {"o": order_id, "t": placed})
        conn.execute(text("UPDATE outbox SET delivered_at = :t WHERE order_id = :o"), {"o": order_id, "t": placed})
    while retention.purge_batch(db, retention.DELIVERED_OUTBOX, NOW - settings.retention.replay, 1000):
        pass
    assert transitions.resend_link(db, order_id, operator="alice", now=NOW).status == "accepted"
    with db.read() as conn:
        keys = conn.execute(text("SELECT payload->'attributes'->>'message_key' FROM outbox WHERE order_id = :o "
                                 "AND payload->>'topic' = 'customer-emails'"), {"o": order_id}).scalars().all()
    assert keys == [f"{order_id}:link:1"]
    assert claims.claim_email(db, order_id, "link", 1, 60) == "claimed"  # a new email, not "already sent"


def test_two_operators_resending_at_once_send_one_new_link(db, settings, order_id):
    import threading


    intake.place_order(db, settings, OrderPlaced("orders", f"m-{order_id}", order_id, "a@example.com"), now=NOW)
    start, results = threading.Barrier(2), []

    def resend(name: str) -> None:
        start.wait()
        results.append(transitions.resend_link(db, order_id, operator=name, now=datetime.now(timezone.utc)).status)

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


def _placed_with_a_link(db, settings, order_id, at):
    from tests.sessions import bind_provider_session, mark_link_sent

    intake.place_order(db, settings, OrderPlaced("orders", f"m-{order_id}", order_id, "a@example.com"), now=at)
    bind_provider_session(db, order_id, f"vs-{order_id}")
    mark_link_sent(db, order_id)


def _provider_session(db, order_id):
    with db.read() as conn:
        return conn.execute(text("SELECT provider_session_id FROM verification_sessions WHERE order_id = :o"),
                            {"o": order_id}).scalar_one()


def _link_jobs(db, order_id):
    with db.read() as conn:
        return conn.execute(text("SELECT count(*) FROM outbox WHERE order_id = :o "
                                 "AND payload->'data'->>'kind' = 'link'"), {"o": order_id}).scalar_one()


def test_no_new_link_while_the_provider_reviews_and_its_approval_then_counts(db, settings, order_id):
    """Veriff's `review` puts the customer's submission before a person at the provider. A
    resend then superseded the provider session, so its approval was ignored and the adult
    was refunded at the deadline."""
    from datetime import date, timedelta

    from shared.domain.messages import ProviderDecision
    from shared.domain.model import Decision

    _placed_with_a_link(db, settings, order_id, NOW - timedelta(hours=2))
    review = ProviderDecision("veriff", f"r-{order_id}", order_id, Decision.REVIEW, f"vs-{order_id}", 9121)
    assert intake.record_decision(db, settings, review, now=NOW - timedelta(hours=1)).status == "accepted"

    result = transitions.resend_link(db, order_id, operator="alice", now=NOW)
    assert (result.status, result.detail) == (
        "ignored", "the provider is deciding on the customer's submission; a new link would void it")
    assert _provider_session(db, order_id) == f"vs-{order_id}"
    assert _link_jobs(db, order_id) == 1

    approval = ProviderDecision("veriff", f"a-{order_id}", order_id, Decision.APPROVED, f"vs-{order_id}", 9001,
                                birth_date=date(1990, 1, 1), decided_at=NOW)
    assert intake.record_decision(db, settings, approval, now=NOW).status == "accepted"
    with db.read() as conn:
        assert conn.execute(text("SELECT status FROM verification_sessions WHERE order_id = :o"),
                            {"o": order_id}).scalar_one() == "verified"


def test_no_new_link_while_a_submission_awaits_its_decision(db, settings, order_id):
    from datetime import timedelta

    from shared.domain.messages import ProviderEvent
    from shared.domain.model import ProviderEventKind

    _placed_with_a_link(db, settings, order_id, NOW - timedelta(hours=2))
    submitted = ProviderEvent("veriff", f"s-{order_id}", order_id, ProviderEventKind.SUBMITTED, f"vs-{order_id}")
    assert intake.record_provider_event(db, settings, submitted, now=NOW - timedelta(hours=1)).status == "accepted"

    assert transitions.resend_link(db, order_id, operator="alice", now=NOW).status == "ignored"
    assert _provider_session(db, order_id) == f"vs-{order_id}"
    assert _link_jobs(db, order_id) == 1


def test_a_new_link_once_the_provider_asks_for_a_resubmission_or_we_hold_the_review(db, settings, order_id):
    """Reviews of ours (no date of birth, a link never sent) and a resubmission request leave
    nothing at the provider to wait for: the resend goes out."""
    from datetime import timedelta

    from shared.domain.messages import ProviderDecision, ProviderEvent
    from shared.domain.model import Decision, ProviderEventKind

    _placed_with_a_link(db, settings, order_id, NOW - timedelta(hours=3))
    submitted = ProviderEvent("veriff", f"s-{order_id}", order_id, ProviderEventKind.SUBMITTED, f"vs-{order_id}")
    intake.record_provider_event(db, settings, submitted, now=NOW - timedelta(hours=2))
    resubmit = ProviderDecision("veriff", f"r-{order_id}", order_id, Decision.RESUBMISSION_REQUESTED,
                                f"vs-{order_id}", 9103)
    assert intake.record_decision(db, settings, resubmit, now=NOW - timedelta(hours=1)).status == "accepted"
    assert transitions.resend_link(db, order_id, operator="alice", now=NOW).status == "accepted"

    other = f"{order_id}-nodob"
    _placed_with_a_link(db, settings, other, NOW - timedelta(hours=2))
    approval = ProviderDecision("veriff", f"a-{other}", other, Decision.APPROVED, f"vs-{other}", 9001,
                                birth_date=None, decided_at=NOW - timedelta(hours=1))
    assert intake.record_decision(db, settings, approval, now=NOW - timedelta(hours=1)).status == "accepted"
    with db.read() as conn:
        assert conn.execute(text("SELECT status FROM verification_sessions WHERE order_id = :o"),
                            {"o": other}).scalar_one() == "in_review"
    assert transitions.resend_link(db, other, operator="alice", now=NOW).status == "accepted"
    assert _link_jobs(db, other) == 2
