"""The local stack's stand-in for Cloud Tasks *and* Pub/Sub push: one durable queue of HTTP
deliveries in PostgreSQL's `local_tasks` table. Every statement on that table lives here.

A row is one delivery to make: a timer (a Cloud Task: POST its JSON body to `timer_expiry`)
or a message (a Pub/Sub push: POST a binary-mode CloudEvent, with its `ce-*` headers, to
the topic's subscriber function). `LocalTaskScheduler` and `LocalPublisher` only add rows,
so a publish returns once the message is durably queued, never after its subscriber ran,
as with Pub/Sub; `devstack.task_dispatcher` delivers them. Rows survive restarts.

Claims are leases (`next_attempt_at` moves past the lease in the claiming statement,
which commits at once), so no transaction is open during a delivery, and finishing is
fenced by the attempt number.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy.exc
from sqlalchemy import text

from shared.db.database import Database
from shared.errors import TransientError

TIMERS = "timers"  # the queue of timer deliveries; a message's queue is its topic

# The two statements a request's relay runs are prepared (`Database.run_prepared`).
_CREATE_TASK = """
    INSERT INTO local_tasks (name, url, body, schedule_time, next_attempt_at, headers)
    VALUES ($1::text, $2::text, $3::bytea, $4::timestamptz, $4::timestamptz, $5::jsonb)
    ON CONFLICT (name) DO NOTHING
    RETURNING name
"""

# Many timers in one round trip: the relay's batch (several orders' timers at once).
_CREATE_TASKS = """
    INSERT INTO local_tasks (name, url, body, schedule_time, next_attempt_at, headers)
    SELECT t.name, t.url, decode(t.body, 'base64'), t.at, t.at, t.headers
    FROM jsonb_to_recordset($1::jsonb) AS t(name text, url text, body text, at timestamptz, headers jsonb)
    ON CONFLICT (name) DO NOTHING
    RETURNING name
"""

_DELETE_TASK = text("""
    UPDATE local_tasks SET deleted_at = now()
    WHERE name = :name AND done_at IS NULL AND deleted_at IS NULL
    RETURNING name
""")

_ENQUEUE_MESSAGES = """
    INSERT INTO local_tasks (name, queue, url, body, headers, schedule_time, next_attempt_at)
    SELECT m.name, m.queue, m.url, decode(m.body, 'base64'), m.headers, now(), now()
    FROM jsonb_to_recordset($1::jsonb) AS m(name text, queue text, url text, body text, headers jsonb)
"""

# Lock due rows (skipping rows another dispatcher is claiming right now), count the
# attempt and push next_attempt_at past the lease, in one statement.
# `due.next_attempt_at` is the time the attempt was scheduled for (the ETA).
_CLAIM = text("""
    WITH due AS (
        SELECT name, next_attempt_at
        FROM local_tasks
        WHERE done_at IS NULL AND deleted_at IS NULL AND next_attempt_at <= now()
        ORDER BY next_attempt_at
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    UPDATE local_tasks AS t
    SET attempts = t.attempts + 1,
        next_attempt_at = now() + :lease,
        first_attempt_at = coalesce(t.first_attempt_at, now())
    FROM due
    WHERE t.name = due.name
    RETURNING t.name, t.queue, t.url, t.body, t.headers, t.attempts, t.last_status, due.next_attempt_at AS eta
""")

# Fenced by the attempt number: if this claim's lease ran out and another dispatcher
# claimed the row again, `attempts` has moved on and a late finish changes nothing.
_SUCCEEDED = text("""
    UPDATE local_tasks SET done_at = now(), last_status = :status
    WHERE name = :name AND attempts = :attempt AND done_at IS NULL
    RETURNING name
""")

_FAILED = text("""
    UPDATE local_tasks
    SET done_at = CASE WHEN :may_give_up AND now() - first_attempt_at >= :max_age THEN now() END,
        last_status = CASE WHEN :may_give_up AND now() - first_attempt_at >= :max_age
                           THEN 'gave_up' ELSE :status END,
        next_attempt_at = now() + :backoff
    WHERE name = :name AND attempts = :attempt AND done_at IS NULL
    RETURNING done_at IS NOT NULL AS gave_up
""")

_CHECK = text("SELECT name FROM local_tasks LIMIT 1")


@dataclass(frozen=True)
class Delivery:
    """One claimed row: what to POST where, and this claim's fencing token."""

    name: str
    queue: str
    url: str
    body: bytes
    # A message's CloudEvent headers; a timer's extra request headers (its trace context), or None.
    headers: dict[str, str] | None
    attempt: int  # 1 for the first attempt
    previous_status: str | None
    eta: datetime

    @property
    def is_message(self) -> bool:
        return self.queue != TIMERS


@dataclass(frozen=True)
class QueuedMessage:
    name: str
    queue: str
    url: str
    body: bytes
    headers: dict[str, str]


@contextlib.contextmanager
def _unavailable() -> Iterator[None]:
    """The local queue is the database: its failures are the queue's."""
    try:
        yield
    except TransientError as exc:
        raise TransientError("local queue unavailable", component="queue") from exc
    except sqlalchemy.exc.DBAPIError as exc:
        # e.g. the table is missing: the queue cannot be used until migrated.
        raise TransientError(f"local queue failed ({type(exc.orig).__name__})", component="queue") from exc


class LocalQueue:
    """Every operation on `local_tasks`, each one short statement."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create_task(self, name: str, url: str, body: bytes, at: datetime,
                    headers: dict[str, str] | None = None) -> bool:
        """False when a row of that name exists, whatever its state (names are used once).
        `headers`: sent with the task's request besides Cloud Tasks' own."""
        with _unavailable():
            return bool(self.db.run_prepared(_CREATE_TASK, name, url, body, at,
                                             json.dumps(headers) if headers else None))

    def create_tasks(self, tasks: Sequence[tuple[str, str, bytes, datetime]
                                          | tuple[str, str, bytes, datetime, dict[str, str]]]) -> set[str]:
        """Add (name, url, body, at[, headers]) rows in one statement, all or none; the names
        created (a name that exists, whatever its state, is not)."""
        rows = [{"name": task[0], "url": task[1], "body": base64.b64encode(task[2]).decode("ascii"),
                 "at": task[3].isoformat(), "headers": (task[4] or None) if len(task) > 4 else None}
                for task in tasks]
        with _unavailable():
            return {name for (name,) in self.db.run_prepared(_CREATE_TASKS, json.dumps(rows))}

    def delete_task(self, name: str) -> bool:
        """True when the task was waiting (or in flight)."""
        with _unavailable():
            return bool(self.db.atomic(_DELETE_TASK, {"name": name}))

    def enqueue(self, messages: Sequence[QueuedMessage]) -> None:
        """Queue messages for delivery now, all or none."""
        rows = [{"name": m.name, "queue": m.queue, "url": m.url, "headers": m.headers,
                 "body": base64.b64encode(m.body).decode("ascii")} for m in messages]
        with _unavailable():
            self.db.run_prepared(_ENQUEUE_MESSAGES, json.dumps(rows))

    def check(self) -> None:
        with _unavailable():
            self.db.atomic(_CHECK)

    def claim(self, limit: int, lease: timedelta) -> list[Delivery]:
        rows = self.db.atomic(_CLAIM, {"limit": limit, "lease": lease})
        return [Delivery(name=r.name, queue=r.queue, url=r.url, body=bytes(r.body),
                         headers=_headers(r.headers), attempt=r.attempts,
                         previous_status=r.last_status, eta=r.eta) for r in rows]

    def succeeded(self, delivery: Delivery, status: str) -> bool:
        return bool(self.db.atomic(_SUCCEEDED, {"name": delivery.name, "attempt": delivery.attempt,
                                                "status": status}))

    def failed(self, delivery: Delivery, status: str, *, may_give_up: bool, max_age: timedelta,
               backoff: timedelta) -> bool:
        """Record a failed attempt; True when the delivery was given up (dead-lettered)."""
        rows = self.db.atomic(_FAILED, {"name": delivery.name, "attempt": delivery.attempt, "status": status,
                                        "may_give_up": may_give_up, "max_age": max_age, "backoff": backoff})
        return bool(rows and rows[0].gave_up)


def _headers(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    return json.loads(value) if isinstance(value, str) else dict(value)
