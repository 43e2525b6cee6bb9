"""One contract for both TaskScheduler implementations.

`cloud` is CloudTasksScheduler against the Cloud Tasks emulator
(gcloud-tasks-emulator 0.6.2 through tests/emulators/tasks_emulator_launcher.py);
`local` is LocalTaskScheduler against the session's real PostgreSQL, delivered
by devstack.task_dispatcher.TaskDispatcher.

What the emulator does not show about the real Cloud Tasks service, so what
these tests cannot vouch for:

- No authentication at all: the OIDC token is stored on the task (checked
  below) but no token is minted or sent, so the Authorization header and the
  timer function's token check are untested; no IAM (enqueuer, actAs).
- Tombstones: the launcher keeps every task name used for the emulator's
  lifetime; the real service refuses a name for about 1 hour after the task
  was deleted or executed, then allows it again (the local queue keeps names
  for good).
- Rate limits (10/s) and max_concurrent_dispatches are stored, not enforced;
  max_burst_size cannot be set through the API at all (output only).
- Retry config is stored, not followed: a failed delivery is retried about
  every 0.1 s with no backoff and no limit (max_attempts,
  max_retry_duration, min/max_backoff and max_doublings are ignored). The
  local dispatcher does follow it (tests/integration/test_task_dispatcher.py).
- Delivery headers differ: X-CloudTasks-QueueName is the full queue path
  (real: the short queue id); User-Agent is Python-urllib (real:
  Google-Cloud-Tasks); X-CloudTasks-TaskExecutionCount equals the retry count
  (real: excludes 5xx answers); no X-CloudTasks-TaskPreviousResponse or
  X-CloudTasks-TaskRetryReason.
- No dispatch deadline (the launcher cuts deliveries at 10 s; real default
  10 min), no validation of task ids, body size (100 KB), or schedule_time
  range (real: at most 30 days ahead), no 429/503 system throttling.
- In-flight tasks: the launcher makes DeleteTask wait for a delivery in
  progress and then answer NOT_FOUND; the real service may delete a task
  while it is being dispatched.
- CreateTask on a missing queue answers FAILED_PRECONDITION (the adapter
  maps it, like any error other than AlreadyExists/NotFound, to
  TransientError); the real service's code for that case is not checked.
- State is in memory: stopping the emulator loses every task; deleting a
  queue does not block re-creating its name for 7 days.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
from google.api_core.exceptions import NotFound
from sqlalchemy import select
from sqlalchemy.engine import make_url

from devstack.postgres import free_port
from devstack.task_dispatcher import TaskDispatcher
from shared.ports import Outcome, TaskScheduler, TimerTask
from shared.adapters.tasks import (
    CloudTasksScheduler,
    LocalTaskScheduler,
    make_scheduler,
)
from shared.config import Settings
from shared.db.database import Database
from shared.db.engine import make_engine
from shared.db.schema import local_tasks
from shared.errors import PermanentError, TransientError
from tests.conftest import base_env
from tests.emulators.cloud_tasks import running_emulator
from tests.emulators.fixtures import dispatching, wait_until
from tests.emulators.http_target import RecordingTarget

PROJECT = "contract-test"
LOCATION = "us-central1"


@dataclass
class Backend:
    kind: str
    scheduler: TaskScheduler
    target: RecordingTarget
    delivering: Callable[[], contextlib.AbstractContextManager]
    finished: Callable[[str], bool]  # the backend no longer holds the task as waiting


def _cloud_scheduler(host: str, target_url: str, **kwargs) -> CloudTasksScheduler:
    return CloudTasksScheduler(project=PROJECT, location=LOCATION,
                               queue=f"q-{uuid.uuid4().hex[:10]}", timer_url=target_url,
                               emulator_host=host, **kwargs)


@pytest.fixture(params=["cloud", "local"])
def backend(request, http_target) -> Iterator[Backend]:
    if request.param == "cloud":
        scheduler = _cloud_scheduler(request.getfixturevalue("cloud_tasks_emulator"), http_target.url)
        assert scheduler.ensure_queue() is Outcome.CREATED

        def finished(name: str) -> bool:
            try:
                scheduler.client.get_task(name=scheduler.task_path(name))
            except NotFound:
                return True
            return False

        yield Backend("cloud", scheduler, http_target, contextlib.nullcontext, finished)
    else:
        db = request.getfixturevalue("clean_tasks_db")

        def delivering():
            return dispatching(TaskDispatcher(db, poll_interval=0.05))

        def finished(name: str) -> bool:
            with db.read() as conn:
                row = conn.execute(select(local_tasks.c.done_at, local_tasks.c.deleted_at)
                                   .where(local_tasks.c.name == name)).one()
            return row.done_at is not None or row.deleted_at is not None

        yield Backend("local", LocalTaskScheduler(db, http_target.url), http_target,
                      delivering, finished)


def _name() -> str:
    return f"{uuid.uuid4().hex}-deadline-0-v1"


def _task(name: str, in_seconds: float = 3600, **payload) -> TimerTask:
    return TimerTask(
        name=name,
        schedule_time=datetime.now(timezone.utc) + timedelta(seconds=in_seconds),
        payload={"order_id": "order-1", "kind": "deadline", "reminder_index": 0,
                 "deadline_version": 1, **payload},
    )


def test_create_then_create_again_is_already_exists(backend):
    name = _name()

    assert backend.scheduler.create(_task(name)) is Outcome.CREATED
    assert backend.scheduler.create(_task(name)) is Outcome.ALREADY_EXISTS
    # Same name, different content: still the name decides.
    assert backend.scheduler.create(_task(name, in_seconds=60, order_id="other")) is Outcome.ALREADY_EXISTS


def test_delete_then_delete_again_is_not_found_and_the_name_stays_taken(backend):
    name = _name()
    backend.scheduler.create(_task(name))

    assert backend.scheduler.delete(name) is Outcome.DELETED
    assert backend.scheduler.delete(name) is Outcome.NOT_FOUND
    assert backend.scheduler.create(_task(name)) is Outcome.ALREADY_EXISTS


def test_delete_of_an_unknown_task_is_not_found(backend):
    assert backend.scheduler.delete(_name()) is Outcome.NOT_FOUND


def test_task_is_delivered_not_before_its_schedule_time(backend):
    name = _name()
    task = _task(name, in_seconds=1.5)

    assert backend.scheduler.create(task) is Outcome.CREATED
    with backend.delivering():
        deliveries = backend.target.wait_for(name, timeout=30)
        assert wait_until(lambda: backend.finished(name), timeout=30)

    assert len(deliveries) == 1
    delivery = deliveries[0]
    assert delivery.received_at >= task.schedule_time
    assert delivery.header("Content-Type") == "application/json"
    assert json.loads(delivery.body) == task.payload
    # Delivered tasks are gone, and their names stay taken.
    assert backend.scheduler.delete(name) is Outcome.NOT_FOUND
    assert backend.scheduler.create(task) is Outcome.ALREADY_EXISTS


def test_a_task_delivers_its_trace_context_header(backend):
    name = _name()
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    task = TimerTask(name=name, schedule_time=datetime.now(timezone.utc) + timedelta(seconds=0.5),
                     payload={"order_id": "order-1"}, headers={"traceparent": traceparent})

    assert backend.scheduler.create(task) is Outcome.CREATED
    with backend.delivering():
        [delivery] = backend.target.wait_for(name, timeout=30)

    assert delivery.header("traceparent") == traceparent
    assert delivery.header("Content-Type") == "application/json"
    assert json.loads(delivery.body) == task.payload


def test_deleted_task_is_not_delivered(backend):
    deleted, sentinel = _name(), _name()
    backend.scheduler.create(_task(deleted, in_seconds=0.5))
    backend.scheduler.create(_task(sentinel, in_seconds=1.0))

    assert backend.scheduler.delete(deleted) is Outcome.DELETED
    with backend.delivering():
        assert backend.target.wait_for(sentinel, timeout=30)

    # The sentinel, due after the deleted task, has been delivered: the
    # deleted one had its chance and was not.
    assert backend.target.deliveries(deleted) == []


def test_check_passes_when_the_queue_is_there(backend):
    assert backend.scheduler.check() is None


def test_names_cloud_tasks_refuses_are_refused_before_any_call(backend):
    with pytest.raises(PermanentError):
        backend.scheduler.create(_task("has/slash"))
    with pytest.raises(PermanentError):
        backend.scheduler.delete("")
    naive = TimerTask(name=_name(), schedule_time=datetime.now(), payload={})
    with pytest.raises(PermanentError):
        backend.scheduler.create(naive)


def test_cloud_raises_transient_when_the_emulator_is_down(tmp_path, http_target):
    with running_emulator(tmp_path / "emulator") as emulator:
        scheduler = _cloud_scheduler(emulator.host, http_target.url, deadline=1.0)
        scheduler.ensure_queue()
        scheduler.check()
    # Stopped now: the same client, the same address, nobody answering.

    with pytest.raises(TransientError) as raised:
        scheduler.check()
    assert raised.value.component == "queue"
    with pytest.raises(TransientError):
        scheduler.create(_task(_name()))
    with pytest.raises(TransientError):
        scheduler.delete(_name())


def test_cloud_raises_transient_for_a_missing_queue(cloud_tasks_emulator, http_target):
    scheduler = _cloud_scheduler(cloud_tasks_emulator, http_target.url)  # queue never created

    with pytest.raises(TransientError):
        scheduler.check()


def test_local_raises_transient_when_the_database_is_down(settings):
    url = make_url(settings.database.url).set(port=free_port()).render_as_string(hide_password=False)
    unreachable = Database(make_engine(dataclasses.replace(settings.database, url=url)))
    scheduler = LocalTaskScheduler(unreachable, "http://127.0.0.1:9/timer")
    try:
        with pytest.raises(TransientError) as raised:
            scheduler.check()
        assert raised.value.component == "queue"
        with pytest.raises(TransientError):
            scheduler.create(_task(_name()))
        with pytest.raises(TransientError):
            scheduler.delete(_name())
        # A batch: each valid task gets the outage, an invalid one its own error.
        results = scheduler.create_batch([_task(_name()), _task("not a valid name")])
        assert isinstance(results[0], TransientError) and isinstance(results[1], PermanentError)
    finally:
        unreachable.engine.dispose()


def test_cloud_task_carries_url_body_headers_and_oidc_identity(cloud_tasks_emulator, http_target):
    scheduler = _cloud_scheduler(cloud_tasks_emulator, http_target.url,
                                 service_account="timers@contract-test.iam.gserviceaccount.com")
    scheduler.ensure_queue()
    task = _task(_name())

    scheduler.create(task)

    stored = scheduler.client.get_task(name=scheduler.task_path(task.name))
    request = stored.http_request
    assert request.url == http_target.url
    assert request.http_method.name == "POST"
    assert dict(request.headers) == {"Content-Type": "application/json"}
    assert json.loads(request.body) == task.payload
    assert request.oidc_token.service_account_email == "timers@contract-test.iam.gserviceaccount.com"
    assert request.oidc_token.audience == http_target.url
    assert stored.schedule_time == task.schedule_time


def test_cloud_task_has_no_oidc_token_without_a_service_account(cloud_tasks_emulator, http_target):
    scheduler = _cloud_scheduler(cloud_tasks_emulator, http_target.url)
    scheduler.ensure_queue()
    task = _task(_name())

    scheduler.create(task)

    stored = scheduler.client.get_task(name=scheduler.task_path(task.name))
    assert not stored.http_request.oidc_token.service_account_email


def test_ensure_queue_sets_rate_and_retry_config_once(cloud_tasks_emulator, http_target):
    scheduler = _cloud_scheduler(cloud_tasks_emulator, http_target.url)

    assert scheduler.ensure_queue() is Outcome.CREATED
    assert scheduler.ensure_queue() is Outcome.ALREADY_EXISTS

    queue = scheduler.client.get_queue(name=scheduler.queue_path)
    assert queue.rate_limits.max_dispatches_per_second == 10
    retry = queue.retry_config
    assert retry.max_attempts == 5
    assert retry.max_retry_duration == timedelta(hours=1)
    assert retry.min_backoff == timedelta(seconds=10)
    assert retry.max_backoff == timedelta(seconds=300)
    assert retry.max_doublings == 5


def test_make_scheduler_chooses_by_tasks_backend(database_url, db):
    local = Settings.from_env(base_env(database_url, TASKS_BACKEND="local"))
    assert isinstance(make_scheduler(local.tasks, db), LocalTaskScheduler)

    cloud = Settings.from_env(base_env(
        database_url, TASKS_BACKEND="cloud", GOOGLE_CLOUD_PROJECT=PROJECT,
        TASKS_QUEUE="timers", TIMER_URL="http://127.0.0.1:9/timer", CLOUD_TASKS_EMULATOR_HOST="127.0.0.1:1",
    ))
    scheduler = make_scheduler(cloud.tasks, db)
    assert isinstance(scheduler, CloudTasksScheduler)
    assert scheduler.emulator_host == "127.0.0.1:1"
    assert scheduler.queue_path == f"projects/{PROJECT}/locations/us-central1/queues/timers"
    assert scheduler._client is None  # built on first use, not here


def test_local_batch_create_answers_each_task_like_create(clean_tasks_db):
    """`create_batch` (the relay's one statement for a batch's timers): an outcome per task,
    in order, exactly as `create` would answer it one by one."""
    scheduler = LocalTaskScheduler(clean_tasks_db, "http://127.0.0.1:9/timer")
    taken, fresh, also_fresh = _name(), _name(), _name()
    assert scheduler.create(_task(taken)) is Outcome.CREATED

    results = scheduler.create_batch([_task(fresh), _task(taken), _task("not a valid name"), _task(also_fresh)])

    assert results[0] is Outcome.CREATED and results[1] is Outcome.ALREADY_EXISTS
    assert isinstance(results[2], PermanentError) and results[2].field == "name"
    assert results[3] is Outcome.CREATED
    with clean_tasks_db.read() as conn:
        names = set(conn.execute(select(local_tasks.c.name)).scalars())
    assert names == {taken, fresh, also_fresh}
    assert scheduler.create_batch([_task(fresh), _task(also_fresh)]) == [Outcome.ALREADY_EXISTS] * 2

