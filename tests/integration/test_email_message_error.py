"""A send that fails because of the message itself is permanent (issue 10 item 8): recorded for
the operator, never retried forever; any other failure still releases the claim for a retry."""

from __future__ import annotations

from datetime import datetime, timezone
from email.errors import HeaderParseError

import pytest
from sqlalchemy import text

from shared.providers.veriff.adapter import LocalVerificationProvider
from shared.domain.messages import EmailJob, OrderPlaced
from shared.errors import PermanentError
from shared.handlers import emails, intake, redrive

NOW = datetime.now(timezone.utc)


class FailingSender:
    def __init__(self, error: Exception) -> None:
        self.error, self.calls = error, 0

    def send(self, message) -> None:
        self.calls += 1
        raise self.error


def rows(db, sql, **params):
    with db.read() as conn:
        return [tuple(r) for r in conn.execute(text(sql), params)]


def test_a_message_error_is_recorded_once_and_not_retried(db, settings, order_id):
    intake.place_order(db, settings, OrderPlaced("orders", f"m-{order_id}", order_id, "a@example.com"), now=NOW)
    sender = FailingSender(HeaderParseError("bad header"))
    job = EmailJob(order_id=order_id, kind="link")
    provider = LocalVerificationProvider("http://127.0.0.1:9/verify")
    assert emails.send_email(db, settings, sender, provider, job, now=NOW).status == "skipped"
    assert emails.send_email(db, settings, sender, provider, job, now=NOW).detail == "already skipped"
    assert sender.calls == 1
    assert rows(db, "SELECT state FROM email_sends WHERE order_id = :o", o=order_id) == [("skipped",)]
    assert rows(db, "SELECT data->>'kind', data->>'reason' FROM event_log WHERE order_id = :o "
                    "AND type = 'customer.email_failed'", o=order_id) == [("link", "HeaderParseError")]


def test_any_other_failure_releases_the_claim_for_a_retry(db, settings, order_id):
    intake.place_order(db, settings, OrderPlaced("orders", f"m-{order_id}", order_id, "a@example.com"), now=NOW)
    sender = FailingSender(ConnectionResetError("smtp went away"))
    job = EmailJob(order_id=order_id, kind="link")
    with pytest.raises(ConnectionResetError):
        emails.send_email(db, settings, sender, LocalVerificationProvider("http://x/verify"), job, now=NOW)
    assert rows(db, "SELECT count(*) FROM email_sends WHERE order_id = :o", o=order_id) == [(0,)]


def test_a_recipient_the_server_refuses_for_good_is_recorded_once_and_not_re_driven(db, settings, order_id):
    """The sender's PermanentError (an SMTP 5xx for the recipient, SendGrid refusing the email) is
    this email's own fault like a MessageError: released instead, it was dropped without a trace
    and, for a link, re-driven by every sweep to be refused again until the deadline."""
    intake.place_order(db, settings, OrderPlaced("orders", f"m-{order_id}", order_id, "a@example.com"), now=NOW)
    sender = FailingSender(PermanentError("SMTP server refused the recipient (550)"))
    job = EmailJob(order_id=order_id, kind="link")
    provider = LocalVerificationProvider("http://127.0.0.1:9/verify")
    assert emails.send_email(db, settings, sender, provider, job, now=NOW).status == "skipped"
    with db.transaction() as conn:  # the link job was delivered, long ago
        conn.execute(text("UPDATE outbox SET delivered_at = now() WHERE order_id = :o"), {"o": order_id})
        conn.execute(text("UPDATE verification_sessions SET created_at = now() - interval '1 day' "
                          "WHERE order_id = :o"), {"o": order_id})
    redrive.redrive_lost_work(db, settings, now=NOW)
    assert rows(db, "SELECT count(*) FROM outbox WHERE order_id = :o AND delivered_at IS NULL", o=order_id) == [(0,)]
    assert sender.calls == 1
    assert rows(db, "SELECT data->>'kind', data->>'reason' FROM event_log WHERE order_id = :o "
                    "AND type = 'customer.email_failed'", o=order_id) == [("link", "PermanentError")]


class RefusingProvider:
    def __init__(self) -> None:
        self.calls = 0

    def create_session(self, order_id):
        self.calls += 1
        raise PermanentError("Veriff refused to create a session (400)")


def test_a_link_the_provider_refuses_for_good_is_recorded_not_dropped(db, settings, order_id):
    """The provider's PermanentError (Veriff refusing to open a session for this order) leaves no
    link to send, as the server's refusal leaves no email: released instead, a reminder was
    acknowledged without a trace (no claim left for the sweeper, no event for the operator)."""
    intake.place_order(db, settings, OrderPlaced("orders", f"m-{order_id}", order_id, "a@example.com"), now=NOW)
    with db.transaction() as conn:  # the link email went out; a fresh link was asked for since
        conn.execute(text("INSERT INTO email_sends (order_id, kind, reminder_index, state) "
                          "VALUES (:o, 'link', 0, 'sent')"), {"o": order_id})
    sender, provider = FailingSender(AssertionError("nothing to send")), RefusingProvider()
    job = EmailJob(order_id=order_id, kind="reminder", reminder_index=0)

    assert emails.send_email(db, settings, sender, provider, job, now=NOW).status == "skipped"
    assert emails.send_email(db, settings, sender, provider, job, now=NOW).detail == "already skipped"
    assert provider.calls == 1 and sender.calls == 0
    assert rows(db, "SELECT state FROM email_sends WHERE order_id = :o AND kind = 'reminder'",
                o=order_id) == [("skipped",)]
    assert rows(db, "SELECT data->>'kind', data->>'reason' FROM event_log WHERE order_id = :o "
                    "AND type = 'customer.email_failed'", o=order_id) == [("reminder", "PermanentError")]
