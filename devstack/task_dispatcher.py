"""The local stack's Cloud Tasks and Pub/Sub push: delivers due rows of the local queue over HTTP.

`shared.adapters.tasks.LocalTaskScheduler` and `shared.adapters.events.LocalPublisher`
add the rows (`shared.db.local_queue` holds every statement); a `TaskDispatcher`
(one or several, in threads or processes) POSTs each row at its time -- a timer with
the headers Cloud Tasks sends, a message as the CloudEvent Eventarc sends -- and
retries failures with the cloud's retry policy for each. Rows live in PostgreSQL, so a
restart loses no timer and no message: a new dispatcher picks up where the old one
stopped.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import requests

from shared.adapters.events import PUSH_RETRY
from shared.db.local_queue import Delivery, LocalQueue
from shared.adapters.tasks import CLOUD_RETRY, RetryPolicy
from shared.db.database import Database
from shared.errors import ServiceError

log = logging.getLogger(__name__)

USER_AGENT = "Google-Cloud-Tasks"

class TaskDispatcher:
    """Delivers due local tasks; safe to run several at once against one database.

    Why a lease rather than holding the row lock during the HTTP call: the
    claim is one short statement that locks due rows with FOR UPDATE SKIP
    LOCKED, increments `attempts` and moves `next_attempt_at` to now + lease,
    then commits. The POST happens after that, outside any transaction, so a
    slow target never holds a database connection or a row lock, and other
    dispatchers simply do not see the row (it is not due) until the lease
    ends. No double delivery at once is possible because the lease is longer
    than the HTTP timeout (checked in the constructor): by the time another
    dispatcher could claim the row again, this one has given up waiting. If a
    dispatcher dies mid-delivery, the row becomes due again when its lease
    ends and is redelivered -- at least once, as Cloud Tasks promises, never
    lost. Finishing (done, or retry later) is fenced by the attempt number.

    Deliveries go out concurrently on a small thread pool, since timer lateness
    is what the local stack is judged by. `run_forever` keeps that pool busy: it
    claims as many rows as there are free delivery threads and claims again as
    soon as one frees, so one slow target (a store's 5 s timeout, a slow SMTP
    server) holds one thread, never the deliveries claimed beside it.
    `run_once` (for tests) claims a batch and waits for all of it.
    """

    def __init__(
        self,
        db: Database,
        *,
        poll_interval: float = 0.2,
        batch_size: int = 32,
        workers: int = 8,
        queue_name: str = "verification-timers",
        retry_policy: RetryPolicy | None = None,
        push_retry_policy: RetryPolicy | None = None,
        request_timeout: float = 30.0,
        lease: float | None = None,
    ) -> None:
        """`retry_policy` (timers) defaults to the cloud queue's (10 s doubling to 300 s),
        `push_retry_policy` (messages) to Pub/Sub push's; tests pass ones with millisecond
        backoffs. `lease` (seconds) defaults to twice `request_timeout` and must be longer."""
        self.queue = LocalQueue(db)
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self.queue_name = queue_name
        self.retry_policy = retry_policy or CLOUD_RETRY
        self.push_retry_policy = push_retry_policy or PUSH_RETRY
        self.request_timeout = request_timeout
        self.lease = lease if lease is not None else 2 * request_timeout
        if self.lease <= request_timeout:
            raise ValueError("lease must be longer than request_timeout, or a slow "
                             "delivery could be claimed again while still in flight")
        self.attempts_made = 0  # deliveries attempted, for tests and benches
        self._counter_lock = threading.Lock()
        self.workers = workers
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="task-dispatch")
        self._in_flight = 0  # claimed by run_forever and not yet finished
        self._freed = threading.Condition()
        self._local = threading.local()
        self._sessions: list[requests.Session] = []

    def run_once(self) -> int:
        """Claim one batch of due tasks, deliver them, and return how many were attempted."""
        claimed = self._claim()
        if not claimed:
            return 0
        for future in [self._pool.submit(self._deliver, task) for task in claimed]:
            future.result()
        with self._counter_lock:
            self.attempts_made += len(claimed)
        return len(claimed)

    def run_forever(self, stop_event: threading.Event) -> None:
        """Deliver until `stop_event` is set, a delivery on every free thread; a failing
        database is logged and retried."""
        while not stop_event.is_set():
            with self._freed:
                while self._in_flight >= self.workers and not stop_event.is_set():
                    self._freed.wait(self.poll_interval)
                free = self.workers - self._in_flight
            if free <= 0:
                continue
            wanted = min(free, self.batch_size)
            try:
                claimed = self.queue.claim(wanted, timedelta(seconds=self.lease))
            except ServiceError as exc:
                log.warning("task dispatcher: %s", exc)
                claimed = []
            except Exception:
                log.exception("task dispatcher: unexpected failure")
                claimed = []
            for task in claimed:
                with self._freed:
                    self._in_flight += 1
                self._pool.submit(self._deliver_and_free, task)
            if len(claimed) < wanted:  # nothing more is due right now
                stop_event.wait(self.poll_interval)

    def _deliver_and_free(self, task: Delivery) -> None:
        try:
            self._deliver(task)
        except Exception:  # a bug must not leak the slot; the row's lease brings it back
            log.exception("task dispatcher: unexpected failure delivering %s", task.name)
        finally:
            with self._counter_lock:
                self.attempts_made += 1
            with self._freed:
                self._in_flight -= 1
                self._freed.notify()

    def close(self) -> None:
        """Wait for deliveries in flight, then release threads and HTTP connections.

        Stop `run_forever` first: a closed dispatcher cannot deliver."""
        self._pool.shutdown(wait=True)
        for session in self._sessions:
            session.close()

    def __enter__(self) -> TaskDispatcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _claim(self) -> list[Delivery]:
        return self.queue.claim(self.batch_size, timedelta(seconds=self.lease))

    def _deliver(self, task: Delivery) -> None:
        status = self._post(task)
        try:
            if status.isdigit() and 200 <= int(status) < 300:
                self.queue.succeeded(task, status)
                log.debug("delivered", extra={"labels": {"task_name": task.name}})
            else:
                self._failed(task, status)
        except ServiceError as exc:
            # The row stays leased; it becomes due again when the lease ends.
            log.warning("task dispatcher: could not record the outcome of %s: %s", task.name, exc)

    def _failed(self, task: Delivery, status: str) -> None:
        policy = self.push_retry_policy if task.is_message else self.retry_policy
        gave_up = self.queue.failed(task, status, may_give_up=policy.attempts_exhausted(task.attempt),
                                    max_age=policy.max_retry_duration, backoff=policy.backoff(task.attempt))
        labels = {"task_name": task.name, "queue": task.queue, "attempt": str(task.attempt), "status": status}
        if gave_up:
            log.error("%s gave up after %d attempts (last status %s)",
                      "message dead-lettered:" if task.is_message else "task", task.attempt, status,
                      extra={"labels": labels})
        else:
            log.warning("delivery failed (status %s); will retry", status, extra={"labels": labels})

    def _post(self, task: Delivery) -> str:
        """POST the delivery as Cloud Tasks or Eventarc would; the HTTP status, or why there was none."""
        if task.is_message:
            return self._send(task, task.headers)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-CloudTasks-QueueName": self.queue_name,
            "X-CloudTasks-TaskName": task.name,
            "X-CloudTasks-TaskRetryCount": str(task.attempt - 1),
            # Cloud Tasks leaves 5xx answers out of this count; local_tasks does
            # not record each answer, so this equals the retry count here.
            "X-CloudTasks-TaskExecutionCount": str(task.attempt - 1),
            "X-CloudTasks-TaskETA": f"{task.eta.timestamp():.6f}",
        }
        if task.previous_status and task.previous_status.isdigit():
            headers["X-CloudTasks-TaskPreviousResponse"] = task.previous_status
        return self._send(task, {**(task.headers or {}), **headers})  # the task's own: its trace context

    def _send(self, task: Delivery, headers: dict[str, str]) -> str:
        try:
            response = self._session().post(
                task.url, data=task.body, headers=headers,
                timeout=self.request_timeout, allow_redirects=False,
            )
        except requests.Timeout:
            return "timeout"
        except requests.RequestException:
            return "connection_error"
        return str(response.status_code)

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            # Proxy variables must never send local deliveries off this machine.
            session.trust_env = False
            self._local.session = session
            with self._counter_lock:
                self._sessions.append(session)
        return session
