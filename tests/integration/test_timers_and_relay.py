"""Timers re-check state; the relay delivers each outbox row once; the sweeper catches lost timers.

The scheduler is the real LocalTaskScheduler (rows in PostgreSQL); publishing
goes to a recording stand-in for the Pub/Sub port (the real publishers have
their own tests against the emulator and over HTTP).
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from shared.ports import Outcome, TimerTask
from shared.adapters.tasks import LocalTaskScheduler
from shared.domain.rows import OutboxKind, OutboxRow
from shared.db import outbox
from shared.domain.messages import OrderPlaced, ProviderDecision, TimerPayload
from shared.domain.model import Decision
from shared.handlers import intake, relay, timers, transitions
from tests.sessions import bind_provider_session, mark_link_sent

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)


class RecordingPublisher:
    def __init__(self) -> None:
        self.messages = []
        self._lock = threading.Lock()

    def publish_batch(self, messages, *, timeout=None):
        with self._lock:
            self.messages.extend(messages)
        return [f"m-{uuid.uuid4().hex[:8]}" for _ in messages]

    def check(self) -> None:
        pass


class CountingScheduler:
    """The real local scheduler, counting the calls the relay makes per task name."""

    def __init__(self, inner, parallel_calls: int | None = None) -> None:
        self.inner = inner
        self.parallel_calls = inner.parallel_calls if parallel_calls is None else parallel_calls
        self.creates = Counter()
        self._lock = threading.Lock()

    def create(self, task, *, timeout=None):
        with self._lock:
            self.creates[task.name] += 1
        return self.inner.create(task)

    def delete(self, name, *, timeout=None):
        return self.inner.delete(name)

    def check(self):
        self.inner.check()


@pytest.fixture
def scheduler(db):
    return LocalTaskScheduler(db, "http://127.0.0.1:9/timer")


def place(db, settings, order_id, at=T0, *, link_sent=True):
    """An order whose verification link email was sent (unless `link_sent` is False)."""
    result = intake.place_order(db, settings, OrderPlaced("orders", f"m-{order_id}", order_id, "a@example.com"),
                                now=at)
    assert result.status == "accepted"
    if link_sent:
        bind_provider_session(db, order_id, "v")  # what the link email leaves behind
        mark_link_sent(db, order_id)


def approval(order_id):
    return ProviderDecision("veriff", f"v-{order_id}", order_id, Decision.APPROVED, "v", 9001,
                            birth_date=date(1990, 1, 1))


def deadline_timer(order_id, version=1):
    return TimerPayload(order_id=order_id, kind="deadline", reminder_index=0, deadline_version=version)


def query(db, sql, **params):
    with db.read() as conn:
        return conn.execute(text(sql), params).all()


def event_count(db, order_id, type_):
    return query(db, "SELECT count(*) FROM event_log WHERE order_id = :o AND type = :t", o=order_id, t=type_)[0][0]


def status_of(db, order_id):
    return query(db, "SELECT status FROM verification_sessions WHERE order_id = :o", o=order_id)[0][0]


# ---- timers -----------------------------------------------------------------------


def test_deadline_before_its_time_is_a_no_op(db, settings, order_id):
    place(db, settings, order_id)
    result = timers.fire(db, deadline_timer(order_id), now=T0 + timedelta(hours=71))
    assert result.status == "ignored" and status_of(db, order_id) == "pending"


def test_duplicate_deadline_delivery_expires_once(db, settings, order_id):
    place(db, settings, order_id)
    late = T0 + timedelta(hours=72, seconds=1)
    results = [timers.fire(db, deadline_timer(order_id), now=late).status for _ in range(3)]
    assert results == ["accepted", "ignored", "ignored"]
    assert status_of(db, order_id) == "expired"
    assert event_count(db, order_id, "verification.expired") == 1
    assert event_count(db, order_id, "refund.requested") == 1
    refunds = query(db, "SELECT count(*) FROM outbox WHERE order_id = :o AND payload->>'topic' = 'order-actions'",
                    o=order_id)[0][0]
    assert refunds == 1


def test_deadline_after_approval_is_a_no_op(db, settings, order_id):
    place(db, settings, order_id)
    intake.record_decision(db, settings, approval(order_id), now=T0 + timedelta(hours=1))
    result = timers.fire(db, deadline_timer(order_id), now=T0 + timedelta(hours=73))
    assert result.status == "ignored"
    assert status_of(db, order_id) == "verified"
    assert event_count(db, order_id, "verification.expired") == 0


def test_extended_deadline_ignores_the_old_timer(db, settings, order_id):
    place(db, settings, order_id)
    new_deadline = T0 + timedelta(hours=96)
    extended = transitions.extend_deadline(db, settings, order_id, new_deadline, now=T0 + timedelta(hours=1),
                                           actor="operator:alice")
    assert extended.status == "accepted"
    old = timers.fire(db, deadline_timer(order_id, version=1), now=T0 + timedelta(hours=72, minutes=1))
    assert old.status == "ignored" and status_of(db, order_id) == "pending"
    new = timers.fire(db, deadline_timer(order_id, version=2), now=new_deadline + timedelta(seconds=1))
    assert new.status == "accepted" and status_of(db, order_id) == "expired"
    rows = query(db, "SELECT kind, deadline_version, state FROM countdown_timers WHERE order_id = :o "
                     "ORDER BY kind, deadline_version", o=order_id)
    assert [tuple(r) for r in rows] == [("deadline", 1, "cancelled"), ("deadline", 2, "fired"),
                                        ("reminder", 1, "cancelled")]
    actor = query(db, "SELECT actor FROM event_log WHERE order_id = :o AND type = "
                      "'verification.deadline_extended'", o=order_id)[0][0]
    assert actor == "operator:alice"


def test_reminder_fires_once_and_not_after_verification(db, settings, order_id):
    place(db, settings, order_id)
    reminder = TimerPayload(order_id=order_id, kind="reminder", reminder_index=0, deadline_version=1)
    at = T0 + timedelta(hours=24)
    assert [timers.fire(db, reminder, now=at).status for _ in range(2)] == ["accepted", "ignored"]
    assert event_count(db, order_id, "verification.reminder_due") == 1
    emails = query(db, "SELECT count(*) FROM outbox WHERE order_id = :o AND payload->'data'->>'kind' = 'reminder'",
                   o=order_id)[0][0]
    assert emails == 1

    other = f"{order_id}-b"
    place(db, settings, other)
    intake.record_decision(db, settings, approval(other), now=at)
    late = TimerPayload(order_id=other, kind="reminder", reminder_index=0, deadline_version=1)
    assert timers.fire(db, late, now=at).status == "ignored"


def test_race_approval_and_deadline_for_100_orders(db, settings):
    """Approval webhook and deadline timer at the same instant: one terminal state, one event, one refund."""
    orders = [f"race-{uuid.uuid4().hex[:10]}" for _ in range(100)]
    for order_id in orders:
        place(db, settings, order_id)
    at = T0 + timedelta(hours=72, seconds=5)

    def approve(order_id):
        return intake.record_decision(db, settings, approval(order_id), now=at).status

    def expire(order_id):
        return timers.fire(db, deadline_timer(order_id), now=at).status

    barrier = threading.Barrier(2)

    def both(order_id):
        def go(fn):
            barrier.wait()
            return fn(order_id)
        with ThreadPoolExecutor(2) as pool:
            return list(pool.map(go, (approve, expire)))

    outcomes = Counter()
    for order_id in orders:
        approve_status, expire_status = both(order_id)
        assert sorted([approve_status, expire_status]) == ["accepted", "ignored"]
        outcomes["verified" if approve_status == "accepted" else "expired"] += 1

    ids = {"o": orders}
    statuses = dict(query(db, "SELECT order_id, status FROM verification_sessions WHERE order_id = ANY(:o)", **ids))
    terminal = Counter(r[0] for r in query(db, "SELECT order_id FROM event_log WHERE order_id = ANY(:o) AND type IN "
                                               "('verification.approved', 'verification.expired')", **ids))
    refunds = Counter(r[0] for r in query(db, "SELECT order_id FROM outbox WHERE order_id = ANY(:o) "
                                              "AND payload->>'topic' = 'order-actions'", **ids))
    assert all(terminal[o] == 1 for o in orders)
    assert Counter(statuses.values()) == outcomes
    for order_id in orders:
        assert refunds[order_id] == (1 if statuses[order_id] == "expired" else 0)


# ---- relay ------------------------------------------------------------------------


def outbox_left(db, order_ids):
    return query(db, "SELECT count(*) FROM outbox WHERE order_id = ANY(:o) AND delivered_at IS NULL",
                 o=order_ids)[0][0]


def test_relay_delivers_tasks_and_messages_and_marks_them(db, settings, scheduler, order_id):
    place(db, settings, order_id)
    publisher = RecordingPublisher()
    report = relay.relay(db, scheduler, publisher, order_ids=[order_id])
    assert (report.delivered, report.failed) == (5, 0)
    assert outbox_left(db, [order_id]) == 0
    topics = Counter(m.topic for m in publisher.messages)
    assert topics == {"verification-events": 2, "customer-emails": 1}
    assert {m.ordering_key for m in publisher.messages} == {order_id}
    tasks = query(db, "SELECT count(*) FROM local_tasks t JOIN countdown_timers c ON c.task_name = t.name "
                      "WHERE c.order_id = :o", o=order_id)[0][0]
    assert tasks == 2


def test_crash_between_create_and_mark_then_relay_again_makes_one_task(db, settings, scheduler, order_id,
                                                                       monkeypatch):
    place(db, settings, order_id)
    counting = CountingScheduler(scheduler)
    real_mark = outbox.record_outbox_outcomes

    def crash(*args, **kwargs):
        raise RuntimeError("instance killed after delivering, before marking")

    monkeypatch.setattr(outbox, "record_outbox_outcomes", crash)
    with pytest.raises(RuntimeError):
        relay.relay(db, counting, RecordingPublisher(), order_ids=[order_id])
    assert outbox_left(db, [order_id]) == 5  # nothing marked delivered
    monkeypatch.setattr(outbox, "record_outbox_outcomes", real_mark)
    # The dead relay's rows stay leased (no other relay takes them) until the lease ends.
    assert relay.relay(db, counting, RecordingPublisher(), order_ids=[order_id]).delivered == 0
    with db.transaction() as conn:
        conn.execute(text("UPDATE outbox SET available_at = now() WHERE order_id = :o"), {"o": order_id})

    report = relay.relay(db, counting, RecordingPublisher(), order_ids=[order_id])
    assert report.delivered == 5 and outbox_left(db, [order_id]) == 0
    assert all(calls == 2 for calls in counting.creates.values())  # asked twice ...
    names = list(counting.creates)
    rows = query(db, "SELECT count(*) FROM local_tasks WHERE name = ANY(:n)", n=names)[0][0]
    assert rows == 2  # ... exists once each (ALREADY_EXISTS counted as success)
    assert scheduler.create(TimerTask(names[0], T0, {})) is Outcome.ALREADY_EXISTS


def test_two_concurrent_relays_deliver_500_rows_once_each(db, settings, scheduler):
    tag = uuid.uuid4().hex[:8]
    orders = [f"relay-{tag}-{i}" for i in range(250)]
    with db.transaction() as conn:
        rows = [OutboxRow(OutboxKind.TASK_CREATE, o, {
            "name": f"{tag}-{o}-{k}", "schedule_time": (T0 + timedelta(days=1)).isoformat(),
            "body": {"v": 1, "order_id": o, "kind": "deadline", "reminder_index": 0, "deadline_version": 1}})
            for o in orders for k in ("a", "b")]
        outbox.write_effects(conn, [], rows)
    counting = CountingScheduler(scheduler)
    barrier = threading.Barrier(2)

    def run(_):
        barrier.wait()
        return relay.relay(db, counting, RecordingPublisher(), order_ids=orders, budget_seconds=60, batch=25)

    with ThreadPoolExecutor(2) as pool:
        reports = list(pool.map(run, range(2)))
    assert sum(r.delivered for r in reports) == 500
    assert len(counting.creates) == 500 and set(counting.creates.values()) == {1}
    assert outbox_left(db, orders) == 0


class MeetingScheduler(CountingScheduler):
    """Each create waits (up to 5 s) until `parties` creates are in flight together, so made
    one after another they all fail: the relay must make them at the same time. A name in
    `permanent` fails for good once the others have met."""

    def __init__(self, inner, parties: int, permanent: frozenset[str] = frozenset()) -> None:
        super().__init__(inner, parallel_calls=8)
        self.meeting = threading.Barrier(parties, timeout=5)
        self.permanent = permanent

    def create(self, task, *, timeout=None):
        from shared.errors import PermanentError, TransientError
        try:
            self.meeting.wait()
        except threading.BrokenBarrierError as exc:
            raise TransientError("created alone", component="queue") from exc
        if task.name in self.permanent:
            raise PermanentError("this task can never be created")
        return super().create(task, timeout=timeout)


def test_one_webhooks_task_creations_go_out_together(db, settings, scheduler, order_id):
    place(db, settings, order_id)  # a deadline and a reminder to create
    meeting = MeetingScheduler(scheduler, parties=2)
    report = relay.relay(db, meeting, RecordingPublisher(), order_ids=[order_id])
    assert (report.delivered, report.failed, report.dead) == (5, 0, 0)
    assert sum(meeting.creates.values()) == 2 and outbox_left(db, [order_id]) == 0


def test_concurrent_task_calls_are_judged_each_on_its_own(db, settings, scheduler, order_id):
    place(db, settings, order_id)
    names = [n for (n,) in query(db, "SELECT task_name FROM countdown_timers WHERE order_id = :o", o=order_id)]
    meeting = MeetingScheduler(scheduler, parties=2, permanent=frozenset(names[:1]))
    report = relay.relay(db, meeting, RecordingPublisher(), order_ids=[order_id])
    assert (report.delivered, report.failed, report.dead) == (4, 0, 1)
    parked = query(db, "SELECT payload->>'name' FROM outbox WHERE order_id = :o AND dead_at IS NOT NULL",
                   o=order_id)
    assert parked == [(names[0],)]


def test_local_task_calls_stay_in_the_relays_thread(db, settings, scheduler, order_id):
    place(db, settings, order_id)
    threads = set()

    class Watching(CountingScheduler):
        def create(self, task, *, timeout=None):
            threads.add(threading.get_ident())
            return super().create(task, timeout=timeout)

    assert scheduler.parallel_calls == 1  # it writes through the request's own small pool
    relay.relay(db, Watching(scheduler), RecordingPublisher(), order_ids=[order_id])
    assert threads == {threading.get_ident()}


def test_failed_delivery_backs_off_and_keeps_the_error(db, settings, order_id):
    place(db, settings, order_id)

    class Down:
        def publish_batch(self, messages, *, timeout=None):
            from shared.errors import TransientError
            return [TransientError("pubsub down", component="pubsub") for _ in messages]

    report = relay.relay(db, LocalTaskScheduler(db, "http://127.0.0.1:9/"), Down(), order_ids=[order_id])
    assert (report.delivered, report.failed) == (2, 3)
    rows = query(db, "SELECT attempts, last_error, available_at > now() + interval '5 seconds' FROM outbox "
                     "WHERE order_id = :o AND delivered_at IS NULL", o=order_id)
    assert len(rows) == 3 and all(r[0] == 1 and "pubsub down" in r[1] and r[2] for r in rows)
    assert relay.relay(db, LocalTaskScheduler(db, "http://127.0.0.1:9/"), RecordingPublisher(),
                       order_ids=[order_id]).delivered == 0  # not due yet


def test_a_row_failing_for_a_week_still_backs_off_ten_minutes(db, settings, order_id):
    place(db, settings, order_id)
    with db.transaction() as conn:  # about a week of ten-minute retries of a lasting outage
        conn.execute(text("UPDATE outbox SET attempts = 1100 WHERE order_id = :o"), {"o": order_id})

    class Down:
        def publish_batch(self, messages, *, timeout=None):
            from shared.errors import TransientError
            return [TransientError("pubsub down", component="pubsub") for _ in messages]

    report = relay.relay(db, LocalTaskScheduler(db, "http://127.0.0.1:9/"), Down(), order_ids=[order_id])
    assert (report.delivered, report.failed) == (2, 3)
    rows = query(db, "SELECT attempts, available_at - now() FROM outbox "
                     "WHERE order_id = :o AND delivered_at IS NULL", o=order_id)
    assert len(rows) == 3
    assert all(r[0] == 1101 and timedelta(minutes=9) < r[1] <= timedelta(minutes=10) for r in rows)


def test_a_publisher_that_cannot_start_fails_its_messages_and_the_tasks_are_marked(
        db, settings, scheduler, order_id, monkeypatch, tmp_path):
    from shared.adapters.events import PubSubPublisher
    for variable in ("PUBSUB_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))  # no gcloud credentials either
    place(db, settings, order_id)
    report = relay.relay(db, scheduler, PubSubPublisher("no-credentials"), order_ids=[order_id])
    assert (report.delivered, report.failed, report.dead) == (2, 3, 0)  # the messages wait, retried
    rows = query(db, "SELECT kind, last_error, dead_at FROM outbox WHERE order_id = :o AND delivered_at IS NULL",
                 o=order_id)
    assert len(rows) == 3 and all(kind == "publish" and "ConfigError" in error and dead is None
                                  for kind, error, dead in rows)


# ---- sweeper ------------------------------------------------------------------------


def test_sweeper_expires_a_session_whose_timer_was_lost_once(db, settings, order_id):
    place(db, settings, order_id, at=T0 - timedelta(days=30))
    with db.transaction() as conn:  # the timer never reached the queue
        conn.execute(text("DELETE FROM outbox WHERE order_id = :o AND kind = 'task.create'"), {"o": order_id})
    now = T0
    first = timers.expire_overdue(db, now=now, grace=timedelta(minutes=5))
    assert first.expired >= 1 and first.failed == 0 and status_of(db, order_id) == "expired"
    assert timers.expire_overdue(db, now=now, grace=timedelta(minutes=5)).expired == 0
    assert event_count(db, order_id, "verification.expired") == 1
    actor = query(db, "SELECT actor FROM event_log WHERE order_id = :o AND type = 'verification.expired'",
                  o=order_id)[0][0]
    assert actor == "sweeper"


def test_sweeper_respects_the_grace_period(db, settings, order_id):
    place(db, settings, order_id, at=T0 - timedelta(hours=72, minutes=2))
    assert order_id not in [r[0] for r in query(
        db, "SELECT order_id FROM verification_sessions WHERE status = 'expired'")]
    timers.expire_overdue(db, now=T0, grace=timedelta(minutes=5))
    assert status_of(db, order_id) == "pending"


def test_a_row_that_can_never_be_delivered_is_parked_not_retried(db, scheduler):
    order_id = f"dead-{uuid.uuid4().hex[:8]}"
    with db.transaction() as conn:
        outbox.write_effects(conn, [], [OutboxRow(OutboxKind.TASK_CREATE, order_id, {
            "name": "not a valid task name!", "schedule_time": T0.isoformat(), "body": {"v": 1}})])
    report = relay.relay(db, scheduler, RecordingPublisher(), order_ids=[order_id])
    assert (report.delivered, report.failed, report.dead) == (0, 0, 1)
    rows = query(db, "SELECT dead_at IS NOT NULL, delivered_at IS NULL, attempts, last_error FROM outbox "
                     "WHERE order_id = :o", o=order_id)
    assert len(rows) == 1 and rows[0][0] and rows[0][1] and rows[0][2] == 1 and "task name" in rows[0][3]
    again = relay.relay(db, scheduler, RecordingPublisher(), order_ids=[order_id])
    assert (again.delivered, again.failed, again.dead) == (0, 0, 0)


def test_deadline_without_a_sent_link_holds_the_session_for_a_person(db, settings, order_id):
    place(db, settings, order_id, at=T0 - timedelta(days=30), link_sent=False)
    result = timers.fire(db, deadline_timer(order_id), now=T0)
    assert (result.status, result.detail) == ("accepted", "link_not_sent")
    assert status_of(db, order_id) == "in_review"
    assert event_count(db, order_id, "verification.expired") == 0
    assert event_count(db, order_id, "refund.requested") == 0
    data = query(db, "SELECT data FROM event_log WHERE order_id = :o AND type = 'verification.in_review'",
                 o=order_id)
    assert [row[0]["reason"] for row in data] == ["link_not_sent"]
    assert timers.fire(db, deadline_timer(order_id), now=T0).status == "ignored"


def test_sweeper_goes_on_past_a_session_it_cannot_expire(db, settings, order_id, monkeypatch):
    broken, good = f"{order_id}-broken", f"{order_id}-good"
    place(db, settings, broken, at=T0 - timedelta(days=30))
    place(db, settings, good, at=T0 - timedelta(days=30))
    real_expire = timers.expire

    def expire(db_, order, **kwargs):
        if order == broken:
            raise ValueError("a row the handler cannot read")
        return real_expire(db_, order, **kwargs)

    monkeypatch.setattr(timers, "expire", expire)
    report = timers.expire_overdue(db, now=T0, grace=timedelta(minutes=5))
    assert report.failed >= 1
    assert status_of(db, good) == "expired" and status_of(db, broken) == "pending"
