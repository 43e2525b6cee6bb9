"""A send that fails because of the message itself is permanent (issue 10 item 8): recorded for
the operator, never retried forever; any other failure still releases the claim for a retry."""

from __future__ import annotations

from datetime import datetime, timezone
from email.errors import HeaderParseError

import pytest
from sqlalchemy import text

from shared.adapters.veriff import LocalVerificationProvider
from shared.domain.messages import EmailJob, OrderPlaced
from shared.handlers import emails, intake

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
