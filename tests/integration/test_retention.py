"""Retention: what is kept, for how long, and that purging goes in bounded batches."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from shared.db import retention as retention_sql
from shared.domain.messages import EmailJob, OrderPlaced, ProviderDecision
from shared.domain.model import Decision
from shared.handlers import emails, intake, retention, transitions
from shared.ports import ProviderSession
from tests.sessions import bind_provider_session

NOW = datetime.now(timezone.utc)


def rows(db, sql, **params):
    with db.read() as conn:
        return [tuple(r) for r in conn.execute(text(sql), params)]


def closed_session(db, settings, order_id, *, closed_days_ago: float) -> None:
    order = OrderPlaced("orders", f"m-{order_id}", order_id, f"{order_id}@buyer.example", customer_id=f"c-{order_id}")
    assert intake.place_order(db, settings, order, now=NOW).status == "accepted"
    with db.transaction() as conn:
        conn.execute(text("UPDATE verification_sessions SET status = 'verified', decided_at = :t, closed_at = :t "
                          "WHERE order_id = :o"), {"o": order_id, "t": NOW - timedelta(days=closed_days_ago)})


def test_a_session_closed_past_retention_loses_its_customer_and_keeps_its_story(db, settings, order_id):
    old, recent = f"{order_id}-old", f"{order_id}-recent"
    closed_session(db, settings, old, closed_days_ago=91)
    closed_session(db, settings, recent, closed_days_ago=89)
    events_before = rows(db, "SELECT count(*) FROM event_log WHERE order_id = :o", o=old)

    retention.purge(db, settings, now=NOW)

    assert rows(db, "SELECT customer_email, customer_id, erased_at IS NOT NULL, status FROM verification_sessions "
                    "WHERE order_id = :o", o=old) == [(None, None, True, "verified")]
    assert rows(db, "SELECT customer_email, customer_id, erased_at FROM verification_sessions WHERE order_id = :o",
                o=recent) == [(f"{recent}@buyer.example", f"c-{recent}", None)]
    assert rows(db, "SELECT count(*) FROM event_log WHERE order_id = :o", o=old) == events_before
    assert retention.preview(db, settings, now=NOW)["customers erased"] == 0


def test_operator_notes_go_with_the_customer_and_the_reason_code_stays(db, settings, order_id):
    """Issue 24: a note on a session closed longer ago than RETENTION is deleted with its customer
    (it may name them); the event and its reason code stay. A recent session's note stays."""
    old, recent = f"{order_id}-old", f"{order_id}-recent"
    for key, days in ((old, 91), (recent, 89)):
        order = OrderPlaced("orders", f"m-{key}", key, f"{key}@buyer.example")
        assert intake.place_order(db, settings, order, now=NOW - timedelta(days=days)).status == "accepted"
        assert transitions.operator_action(db, key, "cancel", operator="alice", now=NOW - timedelta(days=days),
                                           reason="other", note=f"{key}@buyer.example rang to cancel").accepted
        with db.transaction() as conn:
            conn.execute(text("UPDATE verification_sessions SET updated_at = :t, closed_at = :t WHERE order_id = :o"),
                         {"o": key, "t": NOW - timedelta(days=days)})
    assert retention.preview(db, settings, now=NOW)["operator notes erased"] >= 1

    done = retention.purge(db, settings, now=NOW)

    assert done.get("operator notes erased", 0) >= 1
    assert rows(db, "SELECT count(*) FROM operator_notes WHERE order_id = :o", o=old) == [(0,)]
    assert rows(db, "SELECT note FROM operator_notes WHERE order_id = :o", o=recent) == [
        (f"{recent}@buyer.example rang to cancel",)]
    assert rows(db, "SELECT data->>'reason' FROM event_log WHERE order_id = :o AND type = 'order.cancelled'",
                o=old) == [("other",)]
    assert retention.preview(db, settings, now=NOW)["operator notes erased"] == 0


def test_finished_side_effect_runs_go_with_the_customer_and_unfinished_or_recent_ones_stay(db, settings,
                                                                                           order_id):
    """A registered side effect's finished runs (done, failed) of a session erased by retention,
    or erased already (forget), are deleted; a run still due stays, and a recent session's too."""
    old, erased, recent = f"{order_id}-old", f"{order_id}-erased", f"{order_id}-recent"
    closed_session(db, settings, old, closed_days_ago=91)
    closed_session(db, settings, erased, closed_days_ago=5)
    closed_session(db, settings, recent, closed_days_ago=89)
    with db.transaction() as conn:
        conn.execute(text("UPDATE verification_sessions SET erased_at = now(), customer_email = NULL "
                          "WHERE order_id = :o"), {"o": erased})
        for key in (old, erased, recent):
            for effect, state in (("acme_done", "done"), ("acme_failed", "failed"), ("acme_due", "due")):
                conn.execute(text("INSERT INTO effect_runs (order_id, effect, state, attempts, finished_at) "
                                  "VALUES (:o, :e, :s, 1, CASE WHEN :s = 'due' THEN NULL ELSE now() END)"),
                             {"o": key, "e": effect, "s": state})
    assert retention.preview(db, settings, now=NOW)["finished side-effect runs"] >= 4

    done = retention.purge(db, settings, now=NOW)

    assert done.get("finished side-effect runs", 0) >= 4
    left = "SELECT effect FROM effect_runs WHERE order_id = :o ORDER BY effect"
    assert rows(db, left, o=old) == [("acme_due",)]
    assert rows(db, left, o=erased) == [("acme_due",)]
    assert rows(db, left, o=recent) == [("acme_done",), ("acme_due",), ("acme_failed",)]
    assert retention.preview(db, settings, now=NOW)["finished side-effect runs"] == 0


def test_an_open_session_inside_retention_after_its_deadline_is_kept(db, settings, order_id):
    """Open RETENTION (90d) less a day after its deadline (72h after the order): kept as it is."""
    assert intake.place_order(db, settings, OrderPlaced("orders", f"m-{order_id}", order_id, "a@example.com"),
                              now=NOW - timedelta(days=92)).status == "accepted"
    with db.transaction() as conn:
        conn.execute(text("UPDATE verification_sessions SET status = 'in_review' WHERE order_id = :o"), {"o": order_id})
    retention.purge(db, settings, now=NOW)
    assert rows(db, "SELECT customer_email, status, erased_at FROM verification_sessions WHERE order_id = :o",
                o=order_id) == [("a@example.com", "in_review", None)]


@pytest.mark.parametrize("status", ["in_review", "pending"])
def test_an_open_session_retention_past_its_deadline_is_closed_and_erased(db, settings, order_id, status):
    """Whatever keeps it open (a review nobody finished, a link never sent, an expiry that never
    ran), RETENTION after its deadline the session is `cancelled`, reason `retention`, its
    email, id and provider link erased; the held order is released nowhere and not refunded
    automatically: its refund is left to a person (`manual`)."""
    placed = NOW - timedelta(days=94)  # deadline 91 days ago
    order = OrderPlaced("orders", f"m-{order_id}", order_id, f"{order_id}@buyer.example", customer_id="c-1")
    assert intake.place_order(db, settings, order, now=placed).status == "accepted"
    link = f"https://veriff.example/v/{uuid.uuid4().hex}"
    with db.transaction() as conn:
        conn.execute(text("UPDATE verification_sessions SET status = :s, provider_session_id = 'vs-1', provider_url = :u "
                          "WHERE order_id = :o"), {"o": order_id, "s": status, "u": link})
    assert retention.preview(db, settings, now=NOW)[retention_sql.OPEN_CLOSED] >= 1

    done = retention.purge(db, settings, now=NOW)

    assert done[retention_sql.OPEN_CLOSED] >= 1
    assert rows(db, "SELECT status, customer_email, customer_id, provider_url, erased_at IS NOT NULL, refund_status, "
                    "closed_at IS NOT NULL FROM verification_sessions WHERE order_id = :o",
                o=order_id) == [("cancelled", None, None, None, True, "manual", True)]
    assert rows(db, "SELECT type, data->>'reason' FROM event_log WHERE order_id = :o "
                    "AND type IN ('order.cancelled', 'refund.manual', 'refund.requested') ORDER BY id",
                o=order_id) == [("order.cancelled", "retention"), ("refund.manual", "retention")]
    assert rows(db, "SELECT count(*) FROM countdown_timers WHERE order_id = :o AND state = 'scheduled'",
                o=order_id) == [(0,)]
    # No refund request, no release: nothing moves money or ships the order by itself.
    assert rows(db, "SELECT count(*) FROM outbox WHERE order_id = :o AND payload->'data'->>'kind' = 'refund'",
                o=order_id) == [(0,)]
    assert rows(db, "SELECT count(*) FROM store_actions WHERE order_id = :o AND action IN "
                    "('release', 'cancel_and_refund')", o=order_id) == [(0,)]
    assert retention.preview(db, settings, now=NOW)[retention_sql.OPEN_CLOSED] == 0


def test_a_decision_time_in_the_future_does_not_delay_the_erasure(db, settings, order_id):
    """Erasure counts from our own close time, not the provider's `decisionTime` (here a year
    ahead): RETENTION after the close, the customer is gone."""
    closed_on = NOW - timedelta(days=91)
    assert intake.place_order(db, settings, OrderPlaced("orders", f"m-{order_id}", order_id, "a@example.com"),
                              now=closed_on).status == "accepted"
    bind_provider_session(db, order_id, f"v-{order_id}")
    decision = ProviderDecision("veriff", f"d-{order_id}", order_id, Decision.DECLINED, f"v-{order_id}", 9102,
                                decided_at=NOW + timedelta(days=365))
    assert intake.record_decision(db, settings, decision, now=closed_on).status == "accepted"
    with db.transaction() as conn:  # the decision was applied 91 days ago, by our clock
        conn.execute(text("UPDATE verification_sessions SET closed_at = :t WHERE order_id = :o"),
                     {"o": order_id, "t": closed_on})

    retention.purge(db, settings, now=NOW)

    assert rows(db, "SELECT status, customer_email, erased_at IS NOT NULL FROM verification_sessions "
                    "WHERE order_id = :o", o=order_id) == [("declined", None, True)]


def test_every_closing_transition_records_our_close_time(db, settings, order_id):
    assert intake.place_order(db, settings, OrderPlaced("orders", f"m-{order_id}", order_id, "a@example.com"),
                              now=NOW).status == "accepted"
    bind_provider_session(db, order_id, f"v-{order_id}")
    assert rows(db, "SELECT closed_at FROM verification_sessions WHERE order_id = :o", o=order_id) == [(None,)]
    decision = ProviderDecision("veriff", f"d-{order_id}", order_id, Decision.DECLINED, f"v-{order_id}", 9102,
                                decided_at=NOW + timedelta(days=365))
    assert intake.record_decision(db, settings, decision, now=NOW).status == "accepted"
    [(closed_at, decided_at, now)] = rows(db, "SELECT closed_at, decided_at, now() FROM verification_sessions "
                                              "WHERE order_id = :o", o=order_id)
    assert decided_at == NOW + timedelta(days=365)  # the provider's, kept as it said
    assert closed_at <= now and closed_at < decided_at  # ours


def test_a_webhook_replayed_inside_its_window_is_still_a_duplicate(db, settings, order_id):
    order = OrderPlaced("orders", f"m-{order_id}", order_id, "a@example.com")
    assert intake.place_order(db, settings, order, now=NOW).status == "accepted"

    retention.purge(db, settings, now=NOW + timedelta(days=29))
    assert rows(db, "SELECT count(*) FROM webhook_events WHERE event_id = :e", e=f"m-{order_id}") == [(1,)]
    assert intake.place_order(db, settings, order, now=NOW + timedelta(days=29)).detail == "event already received"

    retention.purge(db, settings, now=NOW + timedelta(days=31))
    assert rows(db, "SELECT count(*) FROM webhook_events WHERE event_id = :e", e=f"m-{order_id}") == [(0,)]


def test_delivered_outbox_rows_go_after_the_replay_window_and_undelivered_ones_stay(db, settings, order_id):
    assert intake.place_order(db, settings, OrderPlaced("orders", f"m-{order_id}", order_id, "a@example.com"),
                              now=NOW).status == "accepted"
    with db.transaction() as conn:
        conn.execute(text("UPDATE outbox SET delivered_at = now() - interval '9 days' WHERE order_id = :o "
                          "AND id = (SELECT min(id) FROM outbox WHERE order_id = :o)"), {"o": order_id})
    retention.purge(db, settings, now=NOW)
    assert rows(db, "SELECT count(*), count(delivered_at) FROM outbox WHERE order_id = :o", o=order_id) == [(4, 0)]


def test_a_purge_goes_in_bounded_batches_and_stops_at_its_budget(db, settings, monkeypatch):
    tag = uuid.uuid4().hex[:8]
    with db.transaction() as conn:
        conn.execute(text("INSERT INTO processed_messages (subscriber, message_id, processed_at) "
                          "SELECT 'retention-test', :t || '-' || i, now() - interval '30 days' "
                          "FROM generate_series(1, 2500) AS i"), {"t": tag})
    batches = []
    real = retention_sql.purge_batch

    def counting(db_, kind, cutoff, limit):
        done = real(db_, kind, cutoff, limit)
        batches.append((kind.name, done))
        return done

    monkeypatch.setattr(retention_sql, "purge_batch", counting)
    assert retention.purge(db, settings, now=NOW, budget_seconds=0) == {}  # no time: nothing touched
    done = retention.purge(db, settings, now=NOW, batch=1000)
    assert done.get("processed message ids", 0) >= 2500
    sizes = [n for name, n in batches if name == "processed message ids"]
    assert len(sizes) >= 3 and max(sizes) <= 1000  # one short statement per batch, never one big one
    assert rows(db, "SELECT count(*) FROM processed_messages WHERE message_id LIKE :t", t=f"{tag}-%") == [(0,)]


def test_the_preview_counts_without_changing_anything(db, settings, order_id):
    closed_session(db, settings, order_id, closed_days_ago=100)
    preview = retention.preview(db, dataclasses.replace(settings), now=NOW)
    assert preview["customers erased"] >= 1
    assert rows(db, "SELECT customer_email FROM verification_sessions WHERE order_id = :o",
                o=order_id) == [(f"{order_id}@buyer.example",)]


class _Sender:
    def __init__(self):
        self.sent = []

    def send(self, message):
        self.sent.append(message)


class _Provider:
    def create_session(self, order_id):
        return ProviderSession(f"s-{uuid.uuid4().hex[:8]}", f"http://127.0.0.1:9/v/{uuid.uuid4().hex[:8]}")


def test_a_link_resent_after_the_first_one_was_purged_is_a_new_email(db, settings, order_id):
    """The resend's index must not repeat one already used once the outbox rows that counted
    them are gone (past REPLAY_RETENTION): a repeated index finds its email already sent."""
    placed = NOW - timedelta(days=10)
    assert intake.place_order(db, settings, OrderPlaced("orders", f"m-{order_id}", order_id, "a@example.com"),
                              now=placed).status == "accepted"
    sender = _Sender()
    assert emails.send_email(db, settings, sender, _Provider(), EmailJob(order_id, "link"), now=placed).status == "sent"
    with db.transaction() as conn:  # a person reviews it for days; the link jobs were delivered long ago
        conn.execute(text("UPDATE verification_sessions SET status = 'in_review' WHERE order_id = :o"), {"o": order_id})
        conn.execute(text("UPDATE outbox SET delivered_at = now() - interval '9 days' WHERE order_id = :o"),
                     {"o": order_id})
    retention.purge(db, settings, now=NOW)

    assert transitions.resend_link(db, order_id, operator="ops@example.com", now=NOW).status == "accepted"
    (job,) = rows(db, "SELECT payload->'data' FROM outbox WHERE order_id = :o AND delivered_at IS NULL "
                      "AND payload->>'topic' = 'customer-emails'", o=order_id)
    assert emails.send_email(db, settings, sender, _Provider(), EmailJob.from_dict(job[0]), now=NOW).status == "sent"
    assert len(sender.sent) == 2
