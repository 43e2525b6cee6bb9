"""Task scheduler adapters: Cloud Tasks in production, a PostgreSQL queue locally.

`make_scheduler` is the one place that chooses between them (TASKS_BACKEND).
Both keep the same contract (tests/integration/test_scheduler_contract.py):
a task name can be used once -- creating it again, even after it was deleted
or delivered, is ALREADY_EXISTS, like Cloud Tasks' tombstones -- and deleting
a task that is not waiting is NOT_FOUND.

The local queue's storage is the `local_tasks` table (all its SQL is in
`shared.db.local_queue`). `devstack.task_dispatcher` delivers its rows the
way Cloud Tasks delivers tasks, with `RetryPolicy` -- the same retry
configuration `CloudTasksScheduler.ensure_queue` gives the cloud queue.

Google's client libraries are imported by `CloudTasksScheduler` alone (google.api_core
brings grpc: about 60 ms a local process need not spend).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from shared.ports import Outcome, TaskScheduler, TimerTask
from shared.config import TasksBackend, TasksSettings
from shared.db.database import Database
from shared.db.local_queue import LocalQueue
from shared.errors import ConfigError, PermanentError, TransientError

log = logging.getLogger(__name__)

EMULATOR_HOST_VARIABLE = "CLOUD_TASKS_EMULATOR_HOST"

# Cloud Tasks' own rule for task ids; checked before any I/O so both
# implementations refuse the same names the same way.
_TASK_ID = re.compile(r"[A-Za-z0-9_-]{1,500}")

# The queue's dispatch rate. Cloud Tasks would also take a burst size, but
# `RateLimits.max_burst_size` is output-only in the API: Cloud Tasks derives it
# from max_dispatches_per_second, so the wanted burst of 100 cannot be asked
# for here (nor with gcloud; only queue.yaml's bucket_size sets it).
MAX_DISPATCHES_PER_SECOND = 10.0
WANTED_MAX_BURST_SIZE = 100


@dataclass(frozen=True)
class RetryPolicy:
    """The cloud queue's retry configuration, also followed by the local dispatcher.

    Cloud Tasks semantics: the interval starts at `min_backoff`, doubles
    `max_doublings` times, then grows linearly by the last doubled interval,
    capped at `max_backoff`. A task is given up only when it has been tried
    `max_attempts` times AND `max_retry_duration` has passed since its first
    attempt (both limits; a zero duration means "no age limit", so attempts
    alone decide; `max_attempts=None` means unlimited attempts).
    """

    max_attempts: int | None = 5
    max_retry_duration: timedelta = timedelta(hours=1)
    min_backoff: timedelta = timedelta(seconds=10)
    max_backoff: timedelta = timedelta(seconds=300)
    max_doublings: int = 5

    def backoff(self, failed_attempts: int) -> timedelta:
        """Wait before the next attempt, after `failed_attempts` (>= 1) failures."""
        steps = max(failed_attempts, 1) - 1
        if steps <= self.max_doublings:
            interval = self.min_backoff * (2**steps)
        else:
            interval = self.min_backoff * (2**self.max_doublings) * (steps - self.max_doublings + 1)
        return min(interval, self.max_backoff)

    def attempts_exhausted(self, attempts: int) -> bool:
        return self.max_attempts is not None and attempts >= self.max_attempts


CLOUD_RETRY = RetryPolicy()


def make_scheduler(settings: TasksSettings, db: Database) -> TaskScheduler:
    """The scheduler TASKS_BACKEND names: `cloud` (Cloud Tasks) or `local` (PostgreSQL)."""
    timer_url = settings.require("TIMER_URL")
    if settings.backend == TasksBackend.LOCAL:
        return LocalTaskScheduler(db, timer_url)
    if settings.backend == TasksBackend.CLOUD:
        return CloudTasksScheduler(
            project=settings.require("GOOGLE_CLOUD_PROJECT"),
            location=settings.location,
            queue=settings.queue,
            timer_url=timer_url,
            service_account=settings.service_account,
            emulator_host=settings.emulator_host,
        )
    raise ConfigError("TASKS_BACKEND", f"{settings.backend!r} is not cloud or local")


def _validate(task: TimerTask) -> None:
    _validate_name(task.name)
    if task.schedule_time.tzinfo is None or task.schedule_time.utcoffset() is None:
        raise PermanentError("schedule_time must be timezone-aware", field="schedule_time")


def _validate_name(name: str) -> None:
    if not _TASK_ID.fullmatch(name):
        raise PermanentError(
            "task name must be 1-500 letters, digits, '-' or '_'", field="name"
        )


def _body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


class CloudTasksScheduler:
    """Cloud Tasks through the official client, made on first use.

    Tasks are HTTP POSTs of the JSON payload to `timer_url`, signed with an
    OIDC token for `service_account` (audience `timer_url`) when one is
    configured. With `emulator_host` ("host:port") the client talks plain gRPC
    to that address and never looks for Google credentials.

    `deadline` bounds each call, retries included: the outbox relay and
    `/health` call this in a request path, so a slow queue must fail fast
    (the relay retries later) rather than hold the request for the client's
    default 20 s.
    """

    parallel_calls = 8  # independent RPCs on one gRPC channel

    def __init__(
        self,
        *,
        project: str,
        location: str,
        queue: str,
        timer_url: str,
        service_account: str | None = None,
        emulator_host: str | None = None,
        deadline: float = 10.0,
        retry_policy: RetryPolicy = CLOUD_RETRY,
    ) -> None:
        self.project = project
        self.location = location
        self.queue = queue
        self.timer_url = timer_url
        self.service_account = service_account
        self.emulator_host = emulator_host
        self.deadline = deadline
        self.retry_policy = retry_policy
        self._client = None
        self._lock = threading.Lock()

    @property
    def location_path(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"

    @property
    def queue_path(self) -> str:
        return f"{self.location_path}/queues/{self.queue}"

    def task_path(self, name: str) -> str:
        return f"{self.queue_path}/tasks/{name}"

    def create(self, task: TimerTask, *, timeout: float | None = None) -> Outcome:
        """CREATED, or ALREADY_EXISTS for a name in use or used recently (~1 h tombstone)."""
        from google.api_core import exceptions as google_exceptions
        from google.cloud import tasks_v2

        _validate(task)
        http_request = tasks_v2.HttpRequest(
            http_method=tasks_v2.HttpMethod.POST,
            url=self.timer_url,
            headers={**task.headers, "Content-Type": "application/json"},
            body=_body(task.payload),
        )
        if self.service_account:
            http_request.oidc_token = tasks_v2.OidcToken(
                service_account_email=self.service_account, audience=self.timer_url
            )
        request = tasks_v2.Task(
            name=self.task_path(task.name),
            schedule_time=task.schedule_time,
            http_request=http_request,
        )
        try:
            with self._translated("create task", google_exceptions.AlreadyExists):
                # Retrying a create is safe: the name is deterministic, so a
                # create that landed before its answer was lost comes back as
                # AlreadyExists, which is success to the caller.
                deadline = self._deadline(timeout)
                self.client.create_task(
                    parent=self.queue_path, task=request,
                    retry=self._retry(deadline), timeout=deadline,
                )
        except google_exceptions.AlreadyExists:
            return Outcome.ALREADY_EXISTS
        return Outcome.CREATED

    def delete(self, name: str, *, timeout: float | None = None) -> Outcome:
        """DELETED, or NOT_FOUND when the task is not waiting (never created, done, or deleted)."""
        from google.api_core import exceptions as google_exceptions

        _validate_name(name)
        try:
            with self._translated("delete task", google_exceptions.NotFound):
                deadline = self._deadline(timeout)
                self.client.delete_task(
                    name=self.task_path(name), retry=self._retry(deadline), timeout=deadline
                )
        except google_exceptions.NotFound:
            return Outcome.NOT_FOUND
        return Outcome.DELETED

    def check(self) -> None:
        """One GetQueue call, no retries: raises TransientError when the queue is unreachable."""
        with self._translated("get queue"):
            self.client.get_queue(name=self.queue_path, retry=None, timeout=self.deadline)

    def ensure_queue(self) -> Outcome:
        """Create the queue with its rate limits and retry config; ALREADY_EXISTS leaves it as it is.

        An existing queue is not updated: infra/provision.sh owns the
        production queue; this is for emulators and fresh projects. It looks
        before it creates, because the functions' least-privileged identity
        may read the queue but not create it.
        """
        from google.api_core import exceptions as google_exceptions
        from google.cloud import tasks_v2

        try:
            with self._translated("get queue", google_exceptions.NotFound):
                self.client.get_queue(name=self.queue_path, retry=self._retry(), timeout=self.deadline)
            return Outcome.ALREADY_EXISTS
        except google_exceptions.NotFound:
            pass

        policy = self.retry_policy
        queue = tasks_v2.Queue(
            name=self.queue_path,
            rate_limits=tasks_v2.RateLimits(
                max_dispatches_per_second=MAX_DISPATCHES_PER_SECOND,
                # max_burst_size is output-only (see WANTED_MAX_BURST_SIZE).
            ),
            retry_config=tasks_v2.RetryConfig(
                max_attempts=-1 if policy.max_attempts is None else policy.max_attempts,
                max_retry_duration=policy.max_retry_duration,
                min_backoff=policy.min_backoff,
                max_backoff=policy.max_backoff,
                max_doublings=policy.max_doublings,
            ),
        )
        try:
            with self._translated("create queue", google_exceptions.AlreadyExists):
                self.client.create_queue(
                    parent=self.location_path, queue=queue,
                    retry=self._retry(), timeout=self.deadline,
                )
        except google_exceptions.AlreadyExists:
            return Outcome.ALREADY_EXISTS
        return Outcome.CREATED

    @property
    def client(self):
        """The CloudTasksClient, built once, on first use (never at import)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._make_client()
        return self._client

    def _make_client(self):
        from google.cloud import tasks_v2
        from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

        if self.emulator_host:
            import grpc

            # A ready channel means no credentials lookup. The proxy option
            # keeps an http_proxy in the environment from routing loopback
            # traffic elsewhere.
            channel = grpc.insecure_channel(
                self.emulator_host, options=[("grpc.enable_http_proxy", 0)]
            )
            return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
        import google.auth.exceptions

        try:
            return tasks_v2.CloudTasksClient()
        except google.auth.exceptions.DefaultCredentialsError as exc:
            raise ConfigError(
                "TASKS_BACKEND",
                "Cloud Tasks found no Google credentials "
                f"(run with a service account, set {EMULATOR_HOST_VARIABLE}, or TASKS_BACKEND=local)",
            ) from exc

    def _deadline(self, timeout: float | None) -> float:
        """The call's deadline: the caller's budget when shorter than our own bound."""
        return self.deadline if timeout is None else max(0.05, min(self.deadline, timeout))

    def _retry(self, deadline: float | None = None):
        from google.api_core import exceptions as google_exceptions
        from google.api_core.retry import Retry, if_exception_type

        return Retry(
            predicate=if_exception_type(
                google_exceptions.ServiceUnavailable, google_exceptions.DeadlineExceeded
            ),
            initial=0.1, maximum=1.0, multiplier=2.0, timeout=deadline or self.deadline,
        )

    @contextlib.contextmanager
    def _translated(self, action: str, *expected: type[Exception]) -> Iterator[None]:
        """`expected` errors pass through for the caller to read; any other API error is transient
        (a NotFound from create or check means the queue is missing)."""
        from google.api_core import exceptions as google_exceptions

        try:
            yield
        except expected:
            raise
        except google_exceptions.GoogleAPIError as exc:
            # Identifiers only: the exception text can quote the request.
            raise TransientError(
                f"Cloud Tasks {action} failed ({type(exc).__name__})", component="queue"
            ) from exc


class LocalTaskScheduler:
    """The local stack's Cloud Tasks: rows in the durable local queue
    (`shared.db.local_queue`), delivered by `devstack.task_dispatcher`, so timers
    survive a restart.

    Rows are never removed: a delivered, given-up or deleted task keeps its
    row, and so its name stays taken (Cloud Tasks forgets names after about an
    hour; here they are kept for good, which only matters if a name is reused).
    """

    # A batch of creations is one statement (`create_batch`, the relay's path). Each other
    # call is a statement on the same small pool the request's own writes use: made
    # in parallel, one webhook's creates would hold several connections at once and
    # starve concurrent requests (bench/http.py measures both ways).
    parallel_calls = 1

    def __init__(self, db: Database, timer_url: str) -> None:
        self.queue = LocalQueue(db)
        self.timer_url = timer_url

    def create(self, task: TimerTask, *, timeout: float | None = None) -> Outcome:
        """CREATED, or ALREADY_EXISTS when a row of that name exists, whatever its state.
        (`timeout` is the database's: one short statement.)"""
        _validate(task)
        created = self.queue.create_task(task.name, self.timer_url, _body(task.payload), task.schedule_time,
                                         task.headers)
        return Outcome.CREATED if created else Outcome.ALREADY_EXISTS

    def create_batch(self, tasks: Sequence[TimerTask], *,
                     timeout: float | None = None) -> list[Outcome | Exception]:
        """`create` for many tasks in one statement: an outcome per task, in order (a task
        whose name or time is invalid gets its error, the rest are written)."""
        results: list[Outcome | Exception | None] = [None] * len(tasks)
        valid: list[int] = []
        for i, task in enumerate(tasks):
            try:
                _validate(task)
                valid.append(i)
            except PermanentError as exc:
                results[i] = exc
        if valid:
            try:
                created = self.queue.create_tasks([(tasks[i].name, self.timer_url, _body(tasks[i].payload),
                                                    tasks[i].schedule_time, tasks[i].headers) for i in valid])
            except TransientError as exc:
                created, failure = set(), exc
            else:
                failure = None
            for i in valid:
                results[i] = failure or (Outcome.CREATED if tasks[i].name in created else Outcome.ALREADY_EXISTS)
        return results  # type: ignore[return-value]

    def delete(self, name: str, *, timeout: float | None = None) -> Outcome:
        """DELETED when the task was waiting (or in flight), else NOT_FOUND."""
        _validate_name(name)
        return Outcome.DELETED if self.queue.delete_task(name) else Outcome.NOT_FOUND

    def check(self) -> None:
        """One cheap SELECT on the queue table; TransientError when it cannot be read."""
        self.queue.check()
