"""A SIGKILL at each point of `send_customer_email` (issue: shopify_sigkill's link emails), against
the session's real PostgreSQL: the claim is taken, the provider link saved, the SMTP server takes
the email, the send is recorded. A killed process runs nothing more: the test's `Killed` escapes
the use case and its handler's release of the claim is switched off, so the claim stays as a
SIGKILL leaves it (`sending`, its lease running).

- killed after the link was saved, before the server took the email: the link email goes out
  once the lease passes (the sweeper's re-drive), with the saved link, once;
- the same kill, the session decided before the lease passed (what shopify_sigkill's approval,
  sent as soon as the link existed, did): no "verify your age" email to a decided customer, and
  no re-drive of it;
- killed after the server took the email, before the record: the one repeat the design allows,
  with the first send's Message-ID, recorded once.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest
from sqlalchemy import text

from shared.adapters.email import message_id
from shared.db import claims
from shared.domain.messages import EmailJob, OrderPlaced
from shared.errors import TransientError
from shared.handlers import emails, intake, redrive
from shared.ports import ProviderSession

NOW = datetime.now(timezone.utc)
SENDER = "Shop <shop@example.com>"


class Killed(BaseException):
    """kill -9 at this point: nothing after it runs."""


class Sender:
    """The SMTP server's side: `taken` is what it accepted. `kill` = "before" dies before the server
    takes the email, "after" once it has (before the use case hears its 250)."""

    def __init__(self, kill: str | None = None):
        self.taken = []
        self.kill = kill

    def send(self, message):
        if self.kill == "before":
            raise Killed
        self.taken.append(message)
        if self.kill == "after":
            raise Killed


class Provider:
    def __init__(self):
        self.created = []

    def create_session(self, order_id):
        session = ProviderSession(f"s-{uuid.uuid4().hex[:8]}", f"http://127.0.0.1:9/v/{uuid.uuid4().hex[:8]}")
        self.created.append(session)
        return session


def query(db, sql, **params):
    with db.read() as conn:
        return conn.execute(text(sql), params).all()


def execute(db, sql, **params):
    with db.transaction() as conn:
        conn.execute(text(sql), params)


@pytest.fixture
def order(db, settings, order_id):
    """A pending order whose link job was delivered (its outbox row relayed)."""
    assert intake.place_order(db, settings, OrderPlaced("orders", f"m-{order_id}", order_id, "a@example.com"),
                              now=NOW).status == "accepted"
    execute(db, "UPDATE outbox SET delivered_at = now() WHERE order_id = :o", o=order_id)
    return order_id


def kill_mid_send(db, settings, monkeypatch, order_id, sender, provider):
    job = EmailJob(order_id=order_id, kind="link")
    with monkeypatch.context() as patch:
        patch.setattr(claims, "release_email", lambda *args, **kwargs: None)  # never runs after kill -9
        with pytest.raises(Killed):
            emails.send_email(db, settings, sender, provider, job, now=NOW)
    assert query(db, "SELECT state, attempts FROM email_sends WHERE order_id = :o", o=order_id) == [("sending", 1)]


def lease_passes(db, settings, order_id):
    """The claim's lease (and the session's first lease, the re-drive's wait for a new order) passed."""
    lease = settings.lifecycle.email_lease.total_seconds() + 1
    execute(db, "UPDATE email_sends SET claimed_at = claimed_at - make_interval(secs => :s) WHERE order_id = :o",
            o=order_id, s=lease)
    execute(db, "UPDATE verification_sessions SET created_at = created_at - make_interval(secs => :s) "
                "WHERE order_id = :o", o=order_id, s=lease)


def redriven_jobs(db, settings, order_id):
    """What one sweep re-drives for the order (the jobs it enqueued, then taken off the outbox)."""
    redrive.redrive_lost_work(db, settings, now=NOW)
    jobs = [EmailJob.from_dict(job) for (job,) in query(
        db, "SELECT payload->'data' FROM outbox WHERE order_id = :o AND delivered_at IS NULL "
            "AND payload->>'topic' = 'customer-emails'", o=order_id)]
    execute(db, "UPDATE outbox SET delivered_at = now() WHERE order_id = :o", o=order_id)
    return jobs


def sent_events(db, order_id):
    return query(db, "SELECT data->>'kind' FROM event_log WHERE order_id = :o AND type = 'customer.email_sent'",
                 o=order_id)


def test_killed_after_the_link_was_saved_before_the_server_took_it(db, settings, order, monkeypatch):
    provider = Provider()
    kill_mid_send(db, settings, monkeypatch, order, Sender(kill="before"), provider)
    saved = query(db, "SELECT provider_url FROM verification_sessions WHERE order_id = :o", o=order)[0][0]
    assert saved == provider.created[0].url  # the link exists; its email does not

    sender = Sender()
    with pytest.raises(TransientError):  # the job again, within the lease: the claim may still be live
        emails.send_email(db, settings, sender, provider, EmailJob(order_id=order, kind="link"), now=NOW)
    assert redriven_jobs(db, settings, order) == []
    assert sender.taken == []

    lease_passes(db, settings, order)
    jobs = redriven_jobs(db, settings, order)
    assert [(j.kind, j.reminder_index) for j in jobs] == [("link", 0)]
    assert emails.send_email(db, settings, sender, provider, jobs[0], now=NOW).status == "sent"
    assert len(sender.taken) == 1 and saved in sender.taken[0].text  # the saved link, no second session
    assert len(provider.created) == 1
    assert query(db, "SELECT state, attempts FROM email_sends WHERE order_id = :o", o=order) == [("sent", 2)]
    assert sent_events(db, order) == [("link",)]
    assert redriven_jobs(db, settings, order) == []  # sent: nothing more


def test_the_same_kill_and_the_session_decided_first_sends_no_link(db, settings, order, monkeypatch):
    """What shopify_sigkill saw as a lost link email: its approval, sent as soon as the link existed
    in the database (no customer can: the link is in the email), verified the session first."""
    kill_mid_send(db, settings, monkeypatch, order, Sender(kill="before"), Provider())
    execute(db, "UPDATE verification_sessions SET status = 'verified' WHERE order_id = :o", o=order)
    lease_passes(db, settings, order)
    sender = Sender()
    assert redriven_jobs(db, settings, order) == []
    result = emails.send_email(db, settings, sender, Provider(), EmailJob(order_id=order, kind="link"), now=NOW)
    assert (result.status, result.detail) == ("ignored", "session is verified")
    assert sender.taken == []
    assert sent_events(db, order) == []


def test_killed_after_the_server_took_it_before_the_record(db, settings, order, monkeypatch):
    """The at-least-once window: the server has the email, the record does not. The attempt that
    takes the claim over sends it again, with the first send's Message-ID, and records it once."""
    first = Sender(kill="after")
    provider = Provider()
    kill_mid_send(db, settings, monkeypatch, order, first, provider)
    assert len(first.taken) == 1 and sent_events(db, order) == []

    lease_passes(db, settings, order)
    again = Sender()
    jobs = redriven_jobs(db, settings, order)
    assert [j.kind for j in jobs] == ["link"]
    assert emails.send_email(db, settings, again, provider, jobs[0], now=NOW).status == "sent"
    assert len(again.taken) == 1
    assert message_id(again.taken[0], SENDER) == message_id(first.taken[0], SENDER)
    assert sent_events(db, order) == [("link",)]
    assert query(db, "SELECT state, attempts FROM email_sends WHERE order_id = :o", o=order) == [("sent", 2)]
