"""The local stack's task delivery: devstack.task_dispatcher.TaskDispatcher over real PostgreSQL.

Each test gets an empty `local_tasks` in a private database of the session's
PostgreSQL (see tests.emulators.fixtures.tasks_db) and its own HTTP target on
127.0.0.1. Backoffs are milliseconds through a small RetryPolicy; the checks
are orderings ("not before"), never upper time limits.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from devstack.task_dispatcher import TaskDispatcher
from shared.ports import Outcome, TimerTask
from shared.adapters.tasks import LocalTaskScheduler, RetryPolicy
from shared.db.database import Database
from shared.db.engine import make_engine
from shared.db.schema import local_tasks
from tests.emulators.fixtures import dispatching, wait_until

FAST = RetryPolicy(max_attempts=5, max_retry_duration=timedelta(0),
                   min_backoff=timedelta(milliseconds=50), max_backoff=timedelta(milliseconds=400),
                   max_doublings=5)
MARKER = "payload-marker@example.com"  # must never reach a log line


def _name() -> str:
    return f"{uuid.uuid4().hex}-reminder-0-v1"


def _task(name: str, in_seconds: float = -1.0) -> TimerTask:
    return TimerTask(
        name=name,
        schedule_time=datetime.now(timezone.utc) + timedelta(seconds=in_seconds),
        payload={"order_id": "order-1", "kind": "reminder", "reminder_index": 0,
                 "deadline_version": 1, "email": MARKER},
    )


def _row(db: Database, name: str):
    with db.read() as conn:
        return conn.execute(select(local_tasks).where(local_tasks.c.name == name)).one()


def _all_done(db: Database, names: list[str]) -> bool:
    with db.read() as conn:
        done = conn.execute(select(local_tasks.c.name).where(
            local_tasks.c.name.in_(names), local_tasks.c.done_at.is_not(None))).all()
    return len(done) == len(names)


def test_delivery_carries_the_cloud_tasks_headers_and_body(clean_tasks_db, http_target):
    db = clean_tasks_db
    task = _task(_name())
    LocalTaskScheduler(db, http_target.url).create(task)

    with TaskDispatcher(db, queue_name="verification-timers") as dispatcher:
        assert dispatcher.run_once() == 1

    [delivery] = http_target.deliveries()
    assert delivery.path == "/timer"
    assert json.loads(delivery.body) == task.payload
    assert delivery.header("Content-Type") == "application/json"
    assert delivery.header("User-Agent") == "Google-Cloud-Tasks"
    assert delivery.header("X-CloudTasks-TaskName") == task.name
    assert delivery.header("X-CloudTasks-QueueName") == "verification-timers"
    assert delivery.header("X-CloudTasks-TaskRetryCount") == "0"
    assert delivery.header("X-CloudTasks-TaskExecutionCount") == "0"
    assert delivery.header("X-CloudTasks-TaskETA") == f"{task.schedule_time.timestamp():.6f}"
    assert delivery.header("X-CloudTasks-TaskPreviousResponse") is None
    row = _row(db, task.name)
    assert row.done_at is not None
    assert (row.attempts, row.last_status) == (1, "200")


def test_a_task_not_yet_due_is_left_alone(clean_tasks_db, http_target):
    db = clean_tasks_db
    task = _task(_name(), in_seconds=3600)
    LocalTaskScheduler(db, http_target.url).create(task)

    with TaskDispatcher(db) as dispatcher:
        assert dispatcher.run_once() == 0

    assert http_target.deliveries() == []
    assert _row(db, task.name).attempts == 0


def test_failed_deliveries_are_retried_with_backoff_until_success(clean_tasks_db, http_target):
    db = clean_tasks_db
    task = _task(_name())
    http_target.respond(task.name, 500, 503)
    LocalTaskScheduler(db, http_target.url).create(task)

    with dispatching(TaskDispatcher(db, poll_interval=0.01, retry_policy=FAST)):
        assert wait_until(lambda: _all_done(db, [task.name]))

    deliveries = http_target.deliveries(task.name)
    assert [d.status for d in deliveries] == [500, 503, 200]
    assert [d.header("X-CloudTasks-TaskRetryCount") for d in deliveries] == ["0", "1", "2"]
    assert [d.header("X-CloudTasks-TaskPreviousResponse") for d in deliveries] == [None, "500", "503"]
    # Each retry waited at least its backoff: 50 ms after the first failure, 100 ms after the second.
    for failed_attempts, (before, after) in enumerate(zip(deliveries, deliveries[1:]), start=1):
        assert after.received_at - before.received_at >= FAST.backoff(failed_attempts)
    row = _row(db, task.name)
    assert (row.attempts, row.last_status) == (3, "200")
    assert row.done_at is not None


def test_gives_up_after_max_attempts_and_logs_no_payload(clean_tasks_db, http_target, caplog):
    db = clean_tasks_db
    task = _task(_name())
    http_target.respond(task.name, *[500] * 10)
    LocalTaskScheduler(db, http_target.url).create(task)
    policy = dataclasses.replace(FAST, max_attempts=3)

    with caplog.at_level(logging.DEBUG):
        with dispatching(TaskDispatcher(db, poll_interval=0.01, retry_policy=policy)):
            assert wait_until(lambda: _all_done(db, [task.name]))
        with TaskDispatcher(db, retry_policy=policy) as later:
            assert later.run_once() == 0  # given up means never tried again

    assert [d.status for d in http_target.deliveries(task.name)] == [500, 500, 500]
    row = _row(db, task.name)
    assert (row.attempts, row.last_status) == (3, "gave_up")
    gave_up = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(gave_up) == 1
    assert gave_up[0].labels["task_name"] == task.name
    assert MARKER not in caplog.text


def test_gives_up_only_when_max_retry_duration_has_passed_too(clean_tasks_db, http_target):
    db = clean_tasks_db
    task = _task(_name())
    http_target.respond(task.name, *[500] * 50)
    LocalTaskScheduler(db, http_target.url).create(task)
    policy = dataclasses.replace(FAST, max_attempts=2, max_retry_duration=timedelta(milliseconds=300),
                                 max_backoff=timedelta(milliseconds=100))

    with dispatching(TaskDispatcher(db, poll_interval=0.01, retry_policy=policy)):
        assert wait_until(lambda: _all_done(db, [task.name]))

    row = _row(db, task.name)
    assert row.last_status == "gave_up"
    assert row.attempts >= 2
    assert row.done_at - row.first_attempt_at >= timedelta(milliseconds=300)
    assert len(http_target.deliveries(task.name)) == row.attempts


def test_connection_refused_counts_as_a_failed_attempt(clean_tasks_db, http_target):
    db = clean_tasks_db
    task = _task(_name())
    LocalTaskScheduler(db, "http://127.0.0.1:9/timer").create(task)  # nothing listens there
    policy = dataclasses.replace(FAST, max_attempts=2)

    with dispatching(TaskDispatcher(db, poll_interval=0.01, retry_policy=policy)):
        assert wait_until(lambda: _all_done(db, [task.name]))

    row = _row(db, task.name)
    assert (row.attempts, row.last_status) == (2, "gave_up")


def test_two_dispatchers_deliver_each_of_200_tasks_exactly_once(clean_tasks_db, http_target):
    db = clean_tasks_db
    scheduler = LocalTaskScheduler(db, http_target.url)
    names = [_name() for _ in range(200)]
    for name in names:
        assert scheduler.create(_task(name)) is Outcome.CREATED
    first = TaskDispatcher(db, poll_interval=0.01, batch_size=5, workers=4)
    second = TaskDispatcher(db, poll_interval=0.01, batch_size=5, workers=4)

    with dispatching(first, second):
        assert wait_until(lambda: _all_done(db, names), timeout=60)

    received = Counter(d.task_name for d in http_target.deliveries())
    assert received == Counter(names)  # every task once, nothing else
    assert first.attempts_made + second.attempts_made == 200
    with db.read() as conn:
        attempts = conn.execute(select(local_tasks.c.attempts)
                                .where(local_tasks.c.name.in_(names))).scalars().all()
    assert attempts == [1] * 200


def test_a_task_deleted_before_its_time_is_never_delivered(clean_tasks_db, http_target):
    db = clean_tasks_db
    scheduler = LocalTaskScheduler(db, http_target.url)
    deleted, sentinel = _task(_name(), in_seconds=0.3), _task(_name(), in_seconds=0.6)
    scheduler.create(deleted)
    scheduler.create(sentinel)

    assert scheduler.delete(deleted.name) is Outcome.DELETED
    with dispatching(TaskDispatcher(db, poll_interval=0.01)):
        assert http_target.wait_for(sentinel.name)
        assert wait_until(lambda: _all_done(db, [sentinel.name]))

    assert http_target.deliveries(deleted.name) == []
    row = _row(db, deleted.name)
    assert row.attempts == 0
    assert row.done_at is None and row.deleted_at is not None


def test_a_new_dispatcher_delivers_tasks_created_before_it_started(clean_tasks_db, settings, http_target):
    db = clean_tasks_db
    names = [_name() for _ in range(3)]
    for name in names:
        LocalTaskScheduler(db, http_target.url).create(_task(name))

    # A fresh engine and dispatcher, as after a restart of the local stack.
    restarted = Database(make_engine(dataclasses.replace(
        settings.database, url=db.engine.url.render_as_string(hide_password=False))))
    try:
        with TaskDispatcher(restarted) as dispatcher:
            assert dispatcher.run_once() == 3
    finally:
        restarted.engine.dispose()

    assert Counter(d.task_name for d in http_target.deliveries()) == Counter(names)
    assert _all_done(db, names)


def test_a_claim_abandoned_by_a_crash_is_delivered_after_its_lease(clean_tasks_db, http_target):
    db = clean_tasks_db
    task = _task(_name())
    LocalTaskScheduler(db, http_target.url).create(task)
    crashed = TaskDispatcher(db, request_timeout=0.5, lease=1.0)
    # Claim as a dispatcher would, then "die" before delivering.
    assert [t.name for t in crashed._claim()] == [task.name]
    crashed.close()
    lease_end = _row(db, task.name).next_attempt_at

    with dispatching(TaskDispatcher(db, poll_interval=0.01, request_timeout=0.5, lease=1.0)):
        [delivery] = http_target.wait_for(task.name)
        assert wait_until(lambda: _all_done(db, [task.name]))

    assert delivery.received_at >= lease_end
    assert delivery.header("X-CloudTasks-TaskRetryCount") == "1"  # the lost attempt counts
    assert _row(db, task.name).attempts == 2


def test_a_late_finish_from_an_expired_lease_changes_nothing(clean_tasks_db, http_target):
    db = clean_tasks_db
    task = _task(_name())
    LocalTaskScheduler(db, http_target.url).create(task)
    slow = TaskDispatcher(db, request_timeout=0.5, lease=1.0)
    [claimed] = slow._claim()  # attempt 1, whose delivery will "hang" past its lease
    # Once the lease is over another dispatcher claims attempt 2, which fails
    # and waits an hour for its retry.
    http_target.respond(task.name, 500)
    hour = dataclasses.replace(FAST, min_backoff=timedelta(hours=1), max_backoff=timedelta(hours=1))
    with dispatching(TaskDispatcher(db, poll_interval=0.01, request_timeout=0.5, lease=1.0,
                                    retry_policy=hour)):
        assert http_target.wait_for(task.name)
        assert wait_until(lambda: _row(db, task.name).last_status == "500")
    before = _row(db, task.name)

    # Attempt 1 finally gets through and succeeds: it must not finish attempt 2's row.
    slow._deliver(claimed)
    slow.close()

    assert [d.status for d in http_target.deliveries(task.name)] == [500, 200]
    after = _row(db, task.name)
    assert after == before
    assert (after.attempts, after.last_status, after.done_at) == (2, "500", None)


def test_run_forever_stops_when_asked(clean_tasks_db):
    stop = threading.Event()
    dispatcher = TaskDispatcher(clean_tasks_db, poll_interval=0.01)
    thread = threading.Thread(target=dispatcher.run_forever, args=(stop,))
    thread.start()

    stop.set()
    thread.join(timeout=10)
    dispatcher.close()

    assert not thread.is_alive()
