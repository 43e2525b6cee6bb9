"""Issue 8's rules at the handler level, against the session's real PostgreSQL:
no transaction across a network call, side effects as leases, typed database failures,
discarded connections, and the sweeper's re-drive of lost work."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timezone

import pg8000.dbapi
import pytest
import sqlalchemy.exc
from sqlalchemy import text

from shared import bootstrap
from shared.ports import EmailMessage, ProviderSession, RefundResult
from shared.adapters.tasks import LocalTaskScheduler
from shared.config import Settings
from shared.db.database import Database, translate
from shared.db.engine import make_engine
from shared.domain.messages import EmailJob, OrderAction, OrderPlaced
from shared.errors import InvalidField, TransientError
from shared.handlers import emails, intake, redrive, refunds, relay
from tests.conftest import base_env

NOW = datetime.now(timezone.utc)


def query(db, sql, **params):
    with db.read() as conn:
        return conn.execute(text(sql), params).all()


def place(db, settings, order_id):
    assert intake.place_order(db, settings, OrderPlaced("orders", f"m-{order_id}", order_id, "a@example.com"),
                              now=NOW).status == "accepted"


@pytest.fixture
def tiny_db(database_url, db):
    """A Database whose pool holds exactly one connection, as a starved instance would
    (on the schema the session's `db` fixture migrated)."""
    settings = Settings.from_env(base_env(database_url, DB_POOL_SIZE="1", DB_MAX_OVERFLOW="0"))
    database = Database(make_engine(settings.database))
    yield database
    database.engine.dispose()


class RecordingPublisher:
    def __init__(self):
        self.messages = []

    def publish_batch(self, messages, *, timeout=None):
        self.messages.extend(messages)
        return [uuid.uuid4().hex for _ in messages]


# ---- the relay ----------------------------------------------------------------------


def test_relay_needs_one_connection_at_a_time(tiny_db, settings, order_id):
    """The local scheduler writes through the same one-connection pool: a relay that held a
    transaction across its calls would wait on itself until the pool timed out."""
    place(tiny_db, settings, order_id)
    report = relay.relay(tiny_db, LocalTaskScheduler(tiny_db, "http://127.0.0.1:9/"), RecordingPublisher(),
                         order_ids=[order_id], budget_seconds=30)
    assert (report.delivered, report.failed, report.dead) == (5, 0, 0)
    assert query(tiny_db, "SELECT count(*) FROM outbox WHERE order_id = :o AND delivered_at IS NULL",
                 o=order_id)[0][0] == 0


def test_a_row_the_adapters_cannot_read_is_parked_and_the_rest_go_on(db, settings, order_id):
    place(db, settings, order_id)
    with db.transaction() as conn:
        conn.execute(text("UPDATE outbox SET payload = jsonb_set(payload, '{schedule_time}', '\"0001-13-99\"') "
                          "WHERE order_id = :o AND kind = 'task.create' AND id = "
                          "(SELECT min(id) FROM outbox WHERE order_id = :o AND kind = 'task.create')"),
                     {"o": order_id})
    report = relay.relay(db, LocalTaskScheduler(db, "http://127.0.0.1:9/"), RecordingPublisher(),
                         order_ids=[order_id])
    assert (report.delivered, report.dead) == (4, 1)
    parked = query(db, "SELECT last_error FROM outbox WHERE order_id = :o AND dead_at IS NOT NULL", o=order_id)
    assert [row[0] for row in parked] == ["ValueError"]  # the class, never the payload


def test_relay_budget_releases_what_it_did_not_try(db, settings, order_id):
    place(db, settings, order_id)
    report = relay.relay(db, LocalTaskScheduler(db, "http://127.0.0.1:9/"), RecordingPublisher(),
                         order_ids=[order_id], budget_seconds=0.000001)
    left = query(db, "SELECT count(*) FROM outbox WHERE order_id = :o AND delivered_at IS NULL "
                     "AND available_at <= now()", o=order_id)[0][0]
    assert report.delivered + left == 5  # nothing tried is left leased


# ---- database failures ---------------------------------------------------------------


def _wrapped(code: str | None) -> sqlalchemy.exc.DBAPIError:
    orig = pg8000.dbapi.DatabaseError({"S": "FATAL", "C": code, "M": "customer@example.com"}
                                      if code else "network error")
    return sqlalchemy.exc.DBAPIError("SELECT 1", {}, orig)


@pytest.mark.parametrize("code", ["57P01", "57P03", "08006", "53300", "40001", "40P01", None])
def test_outages_and_lost_connections_are_transient(code):
    assert isinstance(translate(_wrapped(code)), TransientError)


def test_raw_socket_errors_are_transient():
    assert isinstance(translate(ConnectionResetError()), TransientError)


@pytest.mark.parametrize("code", ["22P05", "22003", "22008"])
def test_values_the_database_cannot_store_are_the_inputs_fault(code):
    assert isinstance(translate(_wrapped(code)), InvalidField)


def test_a_programming_error_is_not_hidden():
    assert translate(_wrapped("42P01")) is None


def test_a_statement_that_failed_half_sent_never_poisons_the_pool(tiny_db):
    with pytest.raises(InvalidField):
        tiny_db.atomic(text("SELECT CAST(:v AS text)"), {"v": "bad \ud800 value"})
    for _ in range(5):  # the one connection was discarded, not handed back out of step
        assert tiny_db.atomic(text("SELECT 1"))[0][0] == 1


def test_a_database_error_message_is_never_logged(caplog):
    from shared.log import describe_exception

    error = _wrapped("22P05")
    try:
        try:
            raise error
        except sqlalchemy.exc.DBAPIError as exc:
            raise InvalidField("a value cannot be stored", field="body") from exc
    except InvalidField as exc:
        described = describe_exception(exc)
    assert "22P05" in described and "customer@example.com" not in described
    assert "InvalidField: a value cannot be stored" in described


# ---- one container per process -------------------------------------------------------


def test_requests_racing_on_a_fresh_instance_build_one_container(monkeypatch, database_url):
    for key, value in base_env(database_url).items():
        monkeypatch.setenv(key, value)
    bootstrap.reset()
    built = []
    real_build = bootstrap.build

    def counting_build(settings, **kwargs):
        built.append(1)
        return real_build(settings, **kwargs)

    monkeypatch.setattr(bootstrap, "build", counting_build)
    barrier = threading.Barrier(16)
    seen = []

    def first_request():
        barrier.wait()
        seen.append(id(bootstrap.container()))

    threads = [threading.Thread(target=first_request) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert len(built) == 1 and len(set(seen)) == 1
    finally:
        bootstrap.reset()


# ---- side effects are leases ----------------------------------------------------------


class Sender:
    def __init__(self):
        self.sent: list[EmailMessage] = []

    def send(self, message):
        self.sent.append(message)


class Provider:
    def create_session(self, order_id):
        return ProviderSession(f"s-{uuid.uuid4().hex[:8]}", f"http://127.0.0.1:9/v/{order_id}")


def backdate_email_claim(db, order_id, seconds):
    with db.transaction() as conn:
        conn.execute(text("UPDATE email_sends SET claimed_at = now() - make_interval(secs => :s) "
                          "WHERE order_id = :o"), {"o": order_id, "s": seconds})


def test_an_email_claim_in_flight_is_retried_later_not_answered_done(db, settings, order_id):
    place(db, settings, order_id)
    job = EmailJob(order_id=order_id, kind="link")
    with db.transaction() as conn:  # an attempt that crashed after claiming
        conn.execute(text("INSERT INTO email_sends (order_id, kind, reminder_index, state) "
                          "VALUES (:o, 'link', 0, 'sending')"), {"o": order_id})
    sender = Sender()
    with pytest.raises(TransientError):
        emails.send_email(db, settings, sender, Provider(), job, now=NOW)
    assert sender.sent == []

    backdate_email_claim(db, order_id, settings.lifecycle.email_lease.total_seconds() + 1)
    assert emails.send_email(db, settings, sender, Provider(), job, now=NOW).status == "sent"
    assert emails.send_email(db, settings, sender, Provider(), job, now=NOW).detail == "already sent"
    assert len(sender.sent) == 1


def test_sweeper_re_drives_a_link_email_that_was_lost(db, settings, order_id):
    place(db, settings, order_id)
    with db.transaction() as conn:  # the link job was published and then lost for good
        conn.execute(text("UPDATE outbox SET delivered_at = now() WHERE order_id = :o"), {"o": order_id})
        conn.execute(text("UPDATE verification_sessions SET created_at = now() - interval '1 day' "
                          "WHERE order_id = :o"), {"o": order_id})
    assert redrive.redrive_lost_work(db, settings, now=NOW) >= 1
    jobs = query(db, "SELECT payload->'data' FROM outbox WHERE order_id = :o AND delivered_at IS NULL "
                     "AND payload->>'topic' = 'customer-emails'", o=order_id)
    assert [row[0]["kind"] for row in jobs] == ["link"]
    redrive.redrive_lost_work(db, settings, now=NOW)  # already on its way: not enqueued twice
    assert query(db, "SELECT count(*) FROM outbox WHERE order_id = :o AND delivered_at IS NULL "
                     "AND payload->>'topic' = 'customer-emails'", o=order_id)[0][0] == 1

    assert emails.send_email(db, settings, Sender(), Provider(), EmailJob(order_id=order_id, kind="link"),
                                  now=NOW).status == "sent"
    with db.transaction() as conn:
        conn.execute(text("UPDATE outbox SET delivered_at = now() WHERE order_id = :o"), {"o": order_id})
    redrive.redrive_lost_work(db, settings, now=NOW)  # sent: nothing more to do
    assert query(db, "SELECT count(*) FROM outbox WHERE order_id = :o AND delivered_at IS NULL",
                 o=order_id)[0][0] == 0


def test_sweeper_re_drives_a_link_never_claimed_once_a_lease_not_on_every_sweep(db, settings, order_id):
    """A pending session's link never claimed (the email function down): the relay delivers each
    message the sweep enqueues, so the outbox check alone let every sweep enqueue another copy.
    The session is marked re-driven (`link_redriven_at`, v25): the sweeps within the lease enqueue
    nothing more, the first one past it enqueues it once again, and a sent link ends it."""
    place(db, settings, order_id)
    lease = settings.lifecycle.email_lease.total_seconds()
    links = ("SELECT count(*) FROM outbox WHERE order_id = :o AND payload->>'topic' = 'customer-emails' "
             "AND payload->'data'->>'kind' = 'link'")
    with db.transaction() as conn:  # the link job was published and then lost for good
        conn.execute(text("UPDATE outbox SET delivered_at = now() WHERE order_id = :o"), {"o": order_id})
        conn.execute(text("UPDATE verification_sessions SET created_at = now() - interval '1 day' "
                          "WHERE order_id = :o"), {"o": order_id})
    before = query(db, links, o=order_id)[0][0]

    def sweeps(count):  # each sweep, then the relay publishing what it enqueued (the message stays queued)
        for _ in range(count):
            redrive.redrive_lost_work(db, settings, now=NOW)
            with db.transaction() as conn:
                conn.execute(text("UPDATE outbox SET delivered_at = now() WHERE order_id = :o "
                                  "AND delivered_at IS NULL"), {"o": order_id})
        return query(db, links, o=order_id)[0][0] - before

    assert sweeps(1) == 1
    assert sweeps(3) == 1  # within the lease: not enqueued again
    assert query(db, "SELECT link_redriven_at IS NOT NULL FROM verification_sessions WHERE order_id = :o",
                 o=order_id)[0][0] is True
    with db.transaction() as conn:  # that message was lost as well, and a lease has passed
        conn.execute(text("UPDATE verification_sessions SET link_redriven_at = link_redriven_at "
                          "- make_interval(secs => :s) WHERE order_id = :o"), {"o": order_id, "s": lease + 1})
    assert sweeps(3) == 2

    assert emails.send_email(db, settings, Sender(), Provider(), EmailJob(order_id=order_id, kind="link"),
                             now=NOW).status == "sent"
    with db.transaction() as conn:  # sent: a lease later still nothing more to do
        conn.execute(text("UPDATE verification_sessions SET link_redriven_at = link_redriven_at "
                          "- make_interval(secs => :s) WHERE order_id = :o"), {"o": order_id, "s": lease + 1})
    assert sweeps(2) == 2


@pytest.mark.parametrize("kind", ["link", "reminder"])
def test_sweeper_re_drives_a_stale_email_claim_once_a_lease_not_on_every_sweep(db, settings, order_id, kind):
    """An email whose attempt died mid-send (its claim left `sending` past its lease) is re-driven
    once: the sweeps that follow while that message waits in the queue (relayed, not yet run)
    enqueue it no more. If that message is lost too, the claim is re-driven again a lease later;
    the message that runs takes the claim over and sends it, and nothing more is enqueued."""
    place(db, settings, order_id)
    lease = settings.lifecycle.email_lease.total_seconds()
    queued = ("SELECT count(*) FROM outbox WHERE order_id = :o AND payload->>'topic' = 'customer-emails' "
              "AND payload->'data'->>'kind' = :k")
    with db.transaction() as conn:
        conn.execute(text("UPDATE verification_sessions SET created_at = now() - interval '1 day' "
                          "WHERE order_id = :o"), {"o": order_id})
        conn.execute(text("INSERT INTO email_sends (order_id, kind, reminder_index, state) "
                          "VALUES (:o, :k, 0, 'sending')"), {"o": order_id, "k": kind})
        if kind != "link":
            conn.execute(text("INSERT INTO email_sends (order_id, kind, reminder_index, state) "
                              "VALUES (:o, 'link', 0, 'sent')"), {"o": order_id})
    backdate_email_claim(db, order_id, lease + 1)
    before = query(db, queued, o=order_id, k=kind)[0][0]

    def sweeps(count):  # each sweep, then the relay publishing what it enqueued (the message stays queued)
        for _ in range(count):
            redrive.redrive_lost_work(db, settings, now=NOW)
            with db.transaction() as conn:
                conn.execute(text("UPDATE outbox SET delivered_at = now() WHERE order_id = :o "
                                  "AND delivered_at IS NULL"), {"o": order_id})
        return query(db, queued, o=order_id, k=kind)[0][0] - before

    assert sweeps(3) == 1
    with db.transaction() as conn:  # that message was lost as well, and a lease has passed
        conn.execute(text("UPDATE email_sends SET redriven_at = redriven_at - make_interval(secs => :s) "
                          "WHERE order_id = :o AND kind = :k"), {"o": order_id, "k": kind, "s": lease + 1})
    assert sweeps(3) == 2

    sender = Sender()
    job = EmailJob(order_id=order_id, kind=kind)
    assert emails.send_email(db, settings, sender, Provider(), job, now=NOW).status == "sent"
    assert len(sender.sent) == 1
    assert sweeps(2) == 2


def test_sweeper_re_drives_an_operators_resent_link_whose_attempt_died(db, settings, order_id):
    """The operator resent the link (`link` 1) and its attempt died mid-send (claim left `sending`
    past its lease) after link 0 went out: the sweep re-drives link 1 (it did not: only link 0
    was ever re-driven, so the customer never got the resend), its job sends it once, and a link
    resent again since (link 2) leaves link 1 alone."""
    place(db, settings, order_id)
    links = ("SELECT payload->'data'->>'reminder_index' FROM outbox WHERE order_id = :o "
             "AND payload->>'topic' = 'customer-emails' AND payload->'data'->>'kind' = 'link' AND delivered_at IS NULL")
    with db.transaction() as conn:
        conn.execute(text("UPDATE outbox SET delivered_at = now() WHERE order_id = :o"), {"o": order_id})
        conn.execute(text("INSERT INTO email_sends (order_id, kind, reminder_index, state) "
                          "VALUES (:o, 'link', 0, 'sent'), (:o, 'link', 1, 'sending')"), {"o": order_id})
    backdate_email_claim(db, order_id, settings.lifecycle.email_lease.total_seconds() + 1)
    redrive.redrive_lost_work(db, settings, now=NOW)
    assert [r[0] for r in query(db, links, o=order_id)] == ["1"]

    sender = Sender()
    job = EmailJob(order_id=order_id, kind="link", reminder_index=1)
    assert emails.send_email(db, settings, sender, Provider(), job, now=NOW).status == "sent"
    assert len(sender.sent) == 1
    assert query(db, "SELECT state FROM email_sends WHERE order_id = :o AND kind = 'link' AND reminder_index = 1",
                 o=order_id)[0][0] == "sent"

    with db.transaction() as conn:  # link 1 died again, but the operator has resent link 2 since
        conn.execute(text("UPDATE outbox SET delivered_at = now() WHERE order_id = :o"), {"o": order_id})
        conn.execute(text("UPDATE email_sends SET state = 'sending', redriven_at = NULL WHERE order_id = :o "
                          "AND reminder_index = 1"), {"o": order_id})
        conn.execute(text("INSERT INTO email_sends (order_id, kind, reminder_index, state) "
                          "VALUES (:o, 'link', 2, 'sent')"), {"o": order_id})
    backdate_email_claim(db, order_id, settings.lifecycle.email_lease.total_seconds() + 1)
    redrive.redrive_lost_work(db, settings, now=NOW)
    assert query(db, links, o=order_id) == []


def test_sweeper_does_not_re_drive_forever_an_email_its_session_can_no_longer_take(db, settings, order_id):
    """A reminder whose attempt died mid-send (claim left `sending`) is re-driven while its session
    is pending; once the session is verified the email handler ignores it (not sendable any more)
    and leaves the claim, so a re-drive that enqueued it would do so on every sweep, forever."""
    place(db, settings, order_id)
    reminders = ("SELECT count(*) FROM outbox WHERE order_id = :o AND payload->>'topic' = 'customer-emails' "
                 "AND payload->'data'->>'kind' = 'reminder'")
    with db.transaction() as conn:
        conn.execute(text("UPDATE outbox SET delivered_at = now() WHERE order_id = :o"), {"o": order_id})
        conn.execute(text("INSERT INTO email_sends (order_id, kind, reminder_index, state) "
                          "VALUES (:o, 'link', 0, 'sent'), (:o, 'reminder', 0, 'sending')"), {"o": order_id})
    backdate_email_claim(db, order_id, settings.lifecycle.email_lease.total_seconds() + 1)
    redrive.redrive_lost_work(db, settings, now=NOW)
    assert query(db, reminders, o=order_id)[0][0] == 1
    with db.transaction() as conn:
        conn.execute(text("DELETE FROM outbox WHERE order_id = :o AND delivered_at IS NULL"), {"o": order_id})
        conn.execute(text("UPDATE verification_sessions SET status = 'verified' WHERE order_id = :o"),
                     {"o": order_id})
    for _ in range(2):  # each sweep, and the subscriber answering each job it enqueued
        redrive.redrive_lost_work(db, settings, now=NOW)
        for (job,) in query(db, "SELECT payload->'data' FROM outbox WHERE order_id = :o "
                                "AND delivered_at IS NULL AND payload->>'topic' = 'customer-emails'", o=order_id):
            result = emails.send_email(db, settings, Sender(), Provider(), EmailJob.from_dict(job), now=NOW)
            assert result.status == "ignored"
        with db.transaction() as conn:
            conn.execute(text("UPDATE outbox SET delivered_at = now() WHERE order_id = :o"), {"o": order_id})
    assert query(db, reminders, o=order_id)[0][0] == 0



def test_a_reminder_is_not_sent_once_a_person_reviews_the_session(db, settings, order_id):
    """The reminder's timer fired while the session was pending; the customer then submitted and
    the provider put it in review before the job ran: "verify your age" is wrong by then."""
    place(db, settings, order_id)
    with db.transaction() as conn:
        conn.execute(text("UPDATE verification_sessions SET status = 'in_review' WHERE order_id = :o"),
                     {"o": order_id})
    sender = Sender()
    job = EmailJob(order_id=order_id, kind="reminder", reminder_index=0)
    assert emails.send_email(db, settings, sender, Provider(), job, now=NOW).status == "ignored"
    assert sender.sent == []

class Gateway:
    def __init__(self, fail=False):
        self.calls = []
        self.fail = fail

    def refund(self, order_id, idempotency_key, reason):
        self.calls.append(idempotency_key)
        if self.fail:
            raise TransientError("refund API down", component="refund")
        return RefundResult.REFUNDED


def expire_now(db, order_id):
    """As the deadline's transition a day ago: expired, its refund asked for then."""
    with db.transaction() as conn:
        conn.execute(text("UPDATE verification_sessions SET status = 'expired', updated_at = now() - interval '1 day', "
                          "refund_requested_at = now() - interval '1 day' WHERE order_id = :o"), {"o": order_id})


def test_a_refund_in_flight_is_retried_later_and_a_crashed_one_taken_over(db, settings, order_id):
    place(db, settings, order_id)
    expire_now(db, order_id)
    action = OrderAction(order_id=order_id, action="refund", reason="expired")
    with db.transaction() as conn:  # an attempt claimed, then its instance died
        conn.execute(text("UPDATE verification_sessions SET refund_status = 'requested', "
                          "refund_claimed_at = now() WHERE order_id = :o"), {"o": order_id})
    gateway = Gateway()
    with pytest.raises(TransientError):
        refunds.request_refund(db, settings, gateway, action, now=NOW)
    assert gateway.calls == []
    with db.transaction() as conn:
        conn.execute(text("UPDATE verification_sessions SET refund_claimed_at = now() - interval '1 day' "
                          "WHERE order_id = :o"), {"o": order_id})
    assert refunds.request_refund(db, settings, gateway, action, now=NOW).detail == "refunded"
    assert refunds.request_refund(db, settings, gateway, action, now=NOW).detail == "refund already refunded"
    assert gateway.calls == [f"refund-{order_id}"]


def test_sweeper_re_drives_a_refund_whose_request_was_lost(db, settings, order_id):
    place(db, settings, order_id)
    expire_now(db, order_id)
    failing = Gateway(fail=True)
    action = OrderAction(order_id=order_id, action="refund", reason="expired")
    with pytest.raises(TransientError):
        refunds.request_refund(db, settings, failing, action, now=NOW)
    assert redrive.redrive_lost_work(db, settings, now=NOW) >= 1
    jobs = query(db, "SELECT payload->'data' FROM outbox WHERE order_id = :o AND delivered_at IS NULL "
                     "AND payload->>'topic' = 'order-actions'", o=order_id)
    assert [row[0]["action"] for row in jobs] == ["refund"]
    gateway = Gateway()
    assert refunds.request_refund(db, settings, gateway, action, now=NOW).detail == "refunded"
    assert gateway.calls == [f"refund-{order_id}"]


def test_a_re_driven_refund_gives_the_reason_the_first_request_gave(db, settings, order_id):
    """An underage approval asks for its refund with reason `underage`; when that request is
    lost, the sweeper's re-drive asked with the status (`declined`) instead."""
    from datetime import date, timedelta

    from shared.domain.messages import ProviderDecision
    from shared.domain.model import Decision
    from tests.sessions import bind_provider_session

    place(db, settings, order_id)
    bind_provider_session(db, order_id, f"vs-{order_id}")
    minor = date(NOW.year - 18, 1, 1)
    approval = ProviderDecision("veriff", f"a-{order_id}", order_id, Decision.APPROVED, f"vs-{order_id}", 9001,
                                birth_date=minor, decided_at=NOW)
    assert intake.record_decision(db, settings, approval, now=NOW).status == "accepted"
    [first] = query(db, "SELECT payload->'data' FROM outbox WHERE order_id = :o "
                        "AND payload->>'topic' = 'order-actions'", o=order_id)
    assert (first[0]["action"], first[0]["reason"]) == ("refund", "underage")
    with db.transaction() as conn:  # the request was lost; the session closed a while ago
        conn.execute(text("UPDATE outbox SET delivered_at = now() WHERE order_id = :o"), {"o": order_id})
        conn.execute(text("UPDATE verification_sessions SET updated_at = now() - interval '1 day', "
                          "refund_requested_at = now() - interval '1 day' WHERE order_id = :o"), {"o": order_id})
    assert redrive.redrive_lost_work(db, settings, now=NOW + timedelta(days=1)) >= 1
    again = query(db, "SELECT payload->'data' FROM outbox WHERE order_id = :o AND delivered_at IS NULL "
                      "AND payload->>'topic' = 'order-actions'", o=order_id)
    assert [(row[0]["action"], row[0]["reason"]) for row in again] == [("refund", "underage")]
    place(db, settings, f"{order_id}-x")
    expire_now(db, f"{order_id}-x")
    redrive.redrive_lost_work(db, settings, now=NOW + timedelta(days=1))
    expired = query(db, "SELECT payload->'data' FROM outbox WHERE order_id = :o AND delivered_at IS NULL "
                        "AND payload->>'topic' = 'order-actions'", o=f"{order_id}-x")
    assert [row[0]["reason"] for row in expired] == ["expired"]  # no closing event with a reason: the status


def test_a_sent_email_is_recorded_through_a_short_database_outage(db, settings, order_id, monkeypatch):
    """The message is out: a failed record would let the lease pass and the email go twice."""
    place(db, settings, order_id)
    real = emails._finish_email
    failures = []

    def flaky(*args, **kwargs):
        if len(failures) < 2:
            failures.append(1)
            raise TransientError("database unavailable", component="database")
        return real(*args, **kwargs)

    monkeypatch.setattr(emails, "_finish_email", flaky)
    sender = Sender()
    job = EmailJob(order_id=order_id, kind="link")
    assert emails.send_email(db, settings, sender, Provider(), job, now=NOW).status == "sent"
    assert len(sender.sent) == 1 and len(failures) == 2
    assert emails.send_email(db, settings, sender, Provider(), job, now=NOW).detail == "already sent"
    assert len(sender.sent) == 1


class _BatchCounting(LocalTaskScheduler):
    """The real local scheduler, counting how the relay calls it."""

    def __init__(self, db) -> None:
        super().__init__(db, "http://127.0.0.1:9/")
        self.batches: list[int] = []
        self.single_creates = 0

    def create_batch(self, tasks, *, timeout=None):
        self.batches.append(len(tasks))
        return super().create_batch(tasks, timeout=timeout)

    def create(self, task, *, timeout=None):
        self.single_creates += 1
        return super().create(task, timeout=timeout)


def test_a_relay_batch_writes_all_its_timers_in_one_call(db, settings, order_id):
    """Three orders' timers leave in one local-queue statement, and each lands once."""
    orders = [f"{order_id}-{i}" for i in range(3)]
    for one in orders:
        place(db, settings, one)
    wanted = {row[0] for row in query(db, "SELECT payload->>'name' FROM outbox WHERE order_id = ANY(:o) "
                                          "AND kind = 'task.create'", o=orders)}
    scheduler = _BatchCounting(db)

    report = relay.relay(db, scheduler, RecordingPublisher(), order_ids=orders, budget_seconds=30)

    assert scheduler.batches == [len(wanted)] and scheduler.single_creates == 0
    assert report.failed == report.dead == 0
    assert {row[0] for row in query(db, "SELECT name FROM local_tasks WHERE name = ANY(:n)",
                                    n=sorted(wanted))} == wanted
    assert query(db, "SELECT count(*) FROM outbox WHERE order_id = ANY(:o) AND delivered_at IS NULL",
                 o=orders)[0][0] == 0
