"""The rows an input's side effects add: one frozen dataclass per table, the only place their
shape is written. Python writers and the PL/pgSQL fast path (`place_order`) both take these
(as JSON records; see `shared.db.recordsets`), and a test holds their fields to the tables'
columns."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class OutboxKind(StrEnum):
    TASK_CREATE = "task.create"
    TASK_DELETE = "task.delete"
    PUBLISH = "publish"


@dataclass(frozen=True)
class EventRow:
    """A row of `event_log` (also published on `verification-events`)."""

    event_id: str
    order_id: str
    type: str
    occurred_at: str  # ISO 8601
    request_id: str | None
    actor: str
    data: dict[str, Any]


@dataclass(frozen=True)
class OutboxRow:
    """A row of `outbox`: a task to create or delete, or a message to publish, after commit."""

    kind: OutboxKind
    order_id: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class TimerRow:
    """A row of `countdown_timers`: the timer a `task.create` outbox row schedules."""

    order_id: str
    kind: str
    reminder_index: int
    deadline_version: int
    fire_at: str  # ISO 8601
    task_name: str


@dataclass(frozen=True)
class StoreActionRow:
    """A row of `store_actions`: one store action a transition asks of one connector, written
    with it (state `due`); the claim the action's handler takes before calling the store."""

    order_id: str
    action: str  # a StoreActionKind value
    connector: str  # the registry's name for the connector (`shopify`, `outcome_webhook`)
    reason: str | None  # the outcome a cancel is for (`expired`, `declined`, `underage`)
    requested_at: str  # ISO 8601: when the transition happened (an outcome webhook's occurredAt)


ROW_TYPES = (EventRow, OutboxRow, TimerRow, StoreActionRow)


@dataclass(frozen=True)
class EffectRunRow:
    """A row of `effect_runs`: one registered side effect (`shared.effects`) a transition asks for,
    written with it (state `due`); the durable claim its performer leases before `perform`. Written
    by the unit of work's one statement (`outbox.write_effects`), never by PL/pgSQL `place_order`
    (a new session's rows carry none), so not one of ROW_TYPES."""

    order_id: str
    effect: str  # a name in `shared.effects.registry.EFFECTS`
    reason: str | None  # the transition's reason, else the status it moved to


@dataclass(frozen=True)
class NoteRow:
    """A row of `operator_notes` (v17): an operator's note on the event that records their
    action, kept in the database only (never in the event, its message or an export). Written by
    its own statement (`operator_store.write_notes`), only for operator actions: not one of the
    recordset rows above, which every writer and PL/pgSQL `place_order` take."""

    event_id: str
    order_id: str
    note: str


def as_records(rows) -> list[dict[str, Any]]:
    """JSON-ready dicts, for a `jsonb_to_recordset` insert: each row's fields as they are (a
    shallow copy; `dataclasses.asdict` would deep-copy every payload only to serialise it)."""
    return [dict(vars(row)) for row in rows]
