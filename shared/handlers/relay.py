"""The outbox relay: deliver committed side effects (tasks, messages), each at least once,
never holding a transaction across a network call.

A relay leases a batch of due rows in one short statement (their `available_at` moves
past the lease) and commits; then it calls Cloud Tasks / Pub/Sub (or their local
stand-ins), each call bounded by what is left of its time budget; then it records every
row's outcome in a second short statement. A relay that dies between the two leaves its
rows to be leased again when the lease ends, and the repeat is harmless: task creation
is idempotent by its deterministic name (ALREADY_EXISTS is success), deletion by
NOT_FOUND, and a re-published message carries the same `message_key` attribute, on
which subscribers deduplicate. Each row is judged on its own: one that can never be
delivered (a permanent error, or a payload the adapters cannot even read) is parked
with its error, and the rest go on.

One batch's calls go out together: its messages through the publisher's own batching
(one wait on all their futures), its task calls on a small thread pool shared by every
relay in the process, so a webhook's three task creations cost one call's latency, not
three. A scheduler says how many of its calls may run at once (`parallel_calls`): Cloud
Tasks' are independent RPCs, while the local scheduler writes through the same small
database pool the request itself uses, so its calls stay in the relay's own thread; a
scheduler that can write many tasks at once (`create_batch`: the local queue, one
statement) gets the batch's creations in one call.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from shared import trace as tracing
from shared.ports import EventPublisher, OutgoingMessage, TaskScheduler, TimerTask
from shared.db import outbox
from shared.db.database import Database
from shared.domain.rows import OutboxKind
from shared.errors import ConfigError, ServiceError, TransientError

log = logging.getLogger(__name__)

BATCH = 100
MAX_BACKOFF_SECONDS = 600.0
# Longer than any single call may take (each is bounded by the relay's budget, and the
# sweeper's budget, 20 s, is the longest), so a live relay's rows are never leased twice;
# short enough that a crashed relay's rows are soon delivered by the next one.
LEASE_SECONDS = 30.0
# Task calls in flight at once across the whole process (each is a thread blocked on an RPC).
CALL_THREADS = 8


class Delivery(StrEnum):
    """A leased row's outcome, as `outbox.record_outbox_outcomes` records it."""

    DELIVERED = "delivered"
    FAILED = "failed"  # retried after a backoff
    DEAD = "dead"  # parked, never retried
    RELEASED = "released"  # not attempted (out of time): due again now


@dataclass
class RelayReport:
    delivered: int = 0
    failed: int = 0  # will be retried after a backoff
    dead: int = 0  # failed permanently: parked in the outbox with the error, not retried

    def add(self, other: RelayReport) -> None:
        self.delivered += other.delivered
        self.failed += other.failed
        self.dead += other.dead


def backoff_seconds(attempts: int) -> float:
    """10 s, 20 s, 40 s ... capped at 10 minutes. The exponent is capped too: a row failing
    for a week (1024 attempts) would make `2 ** attempts` too large for a float."""
    return min(10.0 * 2 ** min(attempts, 16), MAX_BACKOFF_SECONDS)


def relay(db: Database, scheduler: TaskScheduler, publisher: EventPublisher, *,
          order_ids: list[str] | None = None, budget_seconds: float = 2.0, batch: int = BATCH) -> RelayReport:
    """Deliver due outbox rows (only these orders' when given) until done or out of time."""
    report = RelayReport()
    stop_at = time.monotonic() + budget_seconds
    while time.monotonic() < stop_at:
        rows = outbox.claim_outbox(db, batch, LEASE_SECONDS, order_ids)
        if not rows:
            break
        outcomes = _deliver(rows, scheduler, publisher, stop_at)
        outbox.record_outbox_outcomes(db, outcomes)
        batch_report = RelayReport(*(sum(o["outcome"] is kind for o in outcomes)
                                     for kind in (Delivery.DELIVERED, Delivery.FAILED, Delivery.DEAD)))
        kinds = {row["id"]: str(row["kind"]) for row in rows}
        for outcome in outcomes:
            _log_failure(outcome, kinds.get(outcome["id"], "unknown"))
        report.add(batch_report)
        if batch_report.failed or len(rows) < batch or len(outcomes) > batch_report.delivered + batch_report.dead:
            break  # what failed waits for its backoff; the sweeper comes back for it
    if report.failed or report.dead:
        log.warning("outbox relay: %d delivered, %d failed, %d dead", report.delivered, report.failed, report.dead)
    return report


def _log_failure(outcome: dict, kind: str) -> None:
    """One structured line per row that failed (the log-based metrics `outbox_rows_parked`
    and `relay_failures` in infra/monitoring/ count them): the row's id and kind and the
    error's class, never its payload."""
    if outcome["outcome"] not in (Delivery.FAILED, Delivery.DEAD):
        return
    error_class = str(outcome["error"] or "").split(":", 1)[0] or "unknown"
    labels = {"outbox_id": str(outcome["id"]), "outbox_kind": kind, "error_class": error_class}
    if outcome["outcome"] is Delivery.DEAD:
        log.error("outbox row %d can never be delivered, parked: %s", outcome["id"], outcome["error"],
                  extra={"labels": {"event": "outbox.parked", **labels}})
    else:
        log.warning("outbox row %d failed, retried in %d s", outcome["id"], outcome["retry_in"],
                    extra={"labels": {"event": "outbox.failed", **labels}})


def _outcome(row: dict, error: Exception | None) -> dict:
    if error is None:
        return {"id": row["id"], "outcome": Delivery.DELIVERED, "error": None, "retry_in": 0}
    # The error's class and our own message only: a library's text may quote the payload.
    retry = isinstance(error, (TransientError, ConfigError))  # the outage or the setting may be fixed
    described = f"{type(error).__name__}: {error}" if isinstance(error, ServiceError) else type(error).__name__
    if retry:
        return {"id": row["id"], "outcome": Delivery.FAILED, "error": described[:500],
                "retry_in": backoff_seconds(row["attempts"])}
    return {"id": row["id"], "outcome": Delivery.DEAD, "error": described[:500], "retry_in": 0}


def _released(row: dict) -> dict:
    return {"id": row["id"], "outcome": Delivery.RELEASED, "error": None, "retry_in": 0}


@functools.cache
def _call_pool() -> ThreadPoolExecutor:
    """The process's pool for task calls, made on first use (its threads start as needed)."""
    return ThreadPoolExecutor(CALL_THREADS, thread_name_prefix="relay-call")


def _deliver(rows: list[dict], scheduler: TaskScheduler, publisher: EventPublisher,
             stop_at: float) -> list[dict]:
    """One outcome per row. A row not attempted because the budget ran out is released."""
    outcomes: list[dict] = []
    tasks: list[dict] = []
    messages: list[tuple[dict, OutgoingMessage]] = []
    for row in rows:
        if row["kind"] != OutboxKind.PUBLISH:
            tasks.append(row)
            continue
        try:
            messages.append((row, _message(row["payload"])))
        except Exception as exc:  # noqa: BLE001 - an unreadable row is parked, the rest go on
            outcomes.append(_outcome(row, exc))
    create_batch = getattr(scheduler, "create_batch", None)
    if create_batch is not None:  # the scheduler writes many tasks in one call
        creates = [row for row in tasks if row["kind"] == OutboxKind.TASK_CREATE]
        tasks = [row for row in tasks if row["kind"] != OutboxKind.TASK_CREATE]
        outcomes.extend(_create_all(creates, create_batch, stop_at))
    in_flight: list[Future] = []
    if scheduler.parallel_calls > 1 and len(tasks) > 1:
        in_flight = [_call_pool().submit(_attempt, row, scheduler, stop_at) for row in tasks]
    else:
        outcomes.extend(_attempt(row, scheduler, stop_at) for row in tasks)
    if messages:  # published while the task calls run
        left = stop_at - time.monotonic()
        if left <= 0:
            outcomes.extend(_released(row) for row, _ in messages)
        else:
            try:
                results = publisher.publish_batch([m for _, m in messages], timeout=left)
            except Exception as exc:  # noqa: BLE001 - e.g. a client that cannot start: every message failed
                results = [exc] * len(messages)
            outcomes.extend(_outcome(row, r if isinstance(r, Exception) else None)
                            for (row, _), r in zip(messages, results))
    outcomes.extend(future.result() for future in in_flight)  # each call is bounded by the budget
    return outcomes


def _create_all(rows: list[dict], create_batch, stop_at: float) -> list[dict]:
    """The batch's task creations in one call of the scheduler's `create_batch`."""
    outcomes: list[dict] = []
    readable: list[tuple[dict, TimerTask]] = []
    for row in rows:
        try:
            readable.append((row, _timer_task(row["payload"])))
        except Exception as exc:  # noqa: BLE001 - an unreadable row is parked, the rest go on
            outcomes.append(_outcome(row, exc))
    left = stop_at - time.monotonic()
    if not readable:
        return outcomes
    if left <= 0:
        return outcomes + [_released(row) for row, _ in readable]
    try:
        results = create_batch([task for _, task in readable], timeout=left)
    except Exception as exc:  # noqa: BLE001 - judged like a failed call for every row
        results = [exc] * len(readable)
    return outcomes + [_outcome(row, r if isinstance(r, Exception) else None)
                       for (row, _), r in zip(readable, results)]


def _attempt(row: dict, scheduler: TaskScheduler, stop_at: float) -> dict:
    """One task call within what is left of the budget (released when nothing is left)."""
    left = stop_at - time.monotonic()
    if left <= 0:
        return _released(row)
    try:
        _call_scheduler(row, scheduler, left)
        return _outcome(row, None)
    except Exception as exc:  # noqa: BLE001 - judged per row: transient retried, others parked
        return _outcome(row, exc)


def _create_task(scheduler: TaskScheduler, payload: dict, timeout: float) -> None:
    scheduler.create(_timer_task(payload), timeout=timeout)


def _delete_task(scheduler: TaskScheduler, payload: dict, timeout: float) -> None:
    scheduler.delete(payload["name"], timeout=timeout)


# The scheduler call each task row kind makes (PUBLISH rows go through the publisher).
_TASK_CALLS: dict[str, Callable[[TaskScheduler, dict, float], None]] = {
    OutboxKind.TASK_CREATE: _create_task,
    OutboxKind.TASK_DELETE: _delete_task,
}


def _call_scheduler(row: dict, scheduler: TaskScheduler, timeout: float) -> None:
    call = _TASK_CALLS.get(row["kind"])
    if call is None:
        raise ValueError("unknown outbox kind")
    call(scheduler, row["payload"], timeout)


def _timer_task(payload: dict) -> TimerTask:
    return TimerTask(name=payload["name"], schedule_time=datetime.fromisoformat(payload["schedule_time"]),
                     payload=payload["body"], headers=_trace_only(payload.get("headers")))


def _trace_only(headers: object) -> dict[str, str]:
    """The stored headers a task may carry: the trace context, nothing else."""
    if not isinstance(headers, dict):
        return {}
    value = headers.get(tracing.HEADER)
    return {tracing.HEADER: value} if isinstance(value, str) and tracing.parse_traceparent(value) else {}


def _message(payload: dict) -> OutgoingMessage:
    return OutgoingMessage(
        topic=payload["topic"],
        data=json.dumps(payload["data"]).encode(),
        ordering_key=payload["ordering_key"],
        attributes=payload["attributes"],
    )
