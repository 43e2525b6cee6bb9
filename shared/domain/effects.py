"""Collects what one input causes: event-log, outbox and timer rows, written with its state change
by the unit of work that owns them (`shared.db.unit_of_work`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.domain.ids import new_id
from shared.domain.messages import (
    TOPIC_EMAILS,
    TOPIC_EVENTS,
    TOPIC_ORDER_ACTIONS,
    EffectRun,
    EmailJob,
    EventMessage,
    OrderAction,
    Payload,
    StoreAction,
    TimerPayload,
)
from shared.domain.model import Email, Event, OrderActionKind, TimerSpec
from shared.domain.rows import EffectRunRow, EventRow, NoteRow, OutboxKind, OutboxRow, StoreActionRow, TimerRow
from shared import trace as tracing


@dataclass
class Effects:
    order_id: str
    now: datetime
    request_id: str | None = None
    actor: str = "system"
    events: list[EventRow] = field(default_factory=list)
    outbox: list[OutboxRow] = field(default_factory=list)
    timers: list[TimerRow] = field(default_factory=list)
    store_actions: list[StoreActionRow] = field(default_factory=list)
    notes: list[NoteRow] = field(default_factory=list)
    effect_runs: list[EffectRunRow] = field(default_factory=list)
    _pending_note: str | None = field(default=None, repr=False)
    _at: str = field(init=False, repr=False)  # `now` as the rows write it: the same for every row

    def __post_init__(self) -> None:
        self._at = self.now.isoformat()

    def explain(self, note: str | None) -> None:
        """An operator's note for the next event recorded (the one that says what their action
        did, or that it was ignored): written to `operator_notes` by its event id, never into the
        event's data or its message (issue 24). Nothing is written when no event follows."""
        self._pending_note = note or None

    def event(self, type_: Event, **data: Any) -> None:
        """An event-log row, also published on `verification-events`."""
        event_id, kind = new_id(), str(type_)
        self.events.append(EventRow(event_id=event_id, order_id=self.order_id, type=kind,
                                    occurred_at=self._at, request_id=self.request_id,
                                    actor=self.actor, data=data))
        if self._pending_note:
            self.notes.append(NoteRow(event_id=event_id, order_id=self.order_id, note=self._pending_note))
            self._pending_note = None
        message = EventMessage(id=event_id, type=kind, order_id=self.order_id, occurred_at=self._at, data=data)
        self._publish(TOPIC_EVENTS, message, key=event_id, type_=kind)

    def note(self, type_: Event, **data: Any) -> None:
        """An event-log row only, not published (an operator's record of an erasure: it names
        no order, so it has no ordering key, and nothing downstream counts it)."""
        self.events.append(EventRow(event_id=new_id(), order_id=self.order_id, type=str(type_),
                                    occurred_at=self._at, request_id=self.request_id,
                                    actor=self.actor, data=data))

    def email(self, kind: Email | str, reminder_index: int = 0) -> None:
        """A customer email (a kind in `EMAILS`) on `customer-emails`."""
        job = EmailJob(order_id=self.order_id, kind=str(kind), reminder_index=reminder_index)
        self._publish(TOPIC_EMAILS, job, key=f"{self.order_id}:{kind}:{reminder_index}",
                      type_=f"email.{kind}")

    def refund(self, reason: str) -> None:
        self.event(Event.REFUND_REQUESTED, reason=reason)
        self.refund_action(reason)

    def refund_action(self, reason: str) -> None:
        """The refund request message alone (the sweeper's re-drive of a lost one)."""
        action = OrderAction(order_id=self.order_id, action=str(OrderActionKind.REFUND), reason=reason)
        self._publish(TOPIC_ORDER_ACTIONS, action, key=f"{self.order_id}:refund", type_="order.refund")

    def store_action(self, action: str, connectors: tuple[str, ...], reason: str | None = None) -> None:
        """The store action `action` through each of `connectors` (the registry's decision,
        `StoreRegistry.connectors_for`): its claim row, due, and its message on `order-actions`."""
        for connector in connectors:
            self.store_actions.append(StoreActionRow(order_id=self.order_id, action=action, connector=connector,
                                                     reason=reason, requested_at=self._at))
            self.store_action_message(action, connector)

    def store_action_message(self, action: str, connector: str) -> None:
        """The store action's message alone (the sweeper's re-drive of a lost one)."""
        self._publish(TOPIC_ORDER_ACTIONS, StoreAction(order_id=self.order_id, action=action, connector=connector),
                      key=f"{self.order_id}:store:{action}:{connector}", type_=f"store.{action}")

    def effect_run(self, effect: str, reason: str | None = None) -> None:
        """A registered side effect (`shared.effects`): its claim row, due, and its message on
        `order-actions` (the caller checks the name against the registry)."""
        self.effect_runs.append(EffectRunRow(order_id=self.order_id, effect=effect, reason=reason))
        self.effect_run_message(effect)

    def effect_run_message(self, effect: str) -> None:
        """The side effect's message alone (the sweeper's re-drive of a lost one)."""
        self._publish(TOPIC_ORDER_ACTIONS, EffectRun(order_id=self.order_id, effect=effect),
                      key=f"{self.order_id}:effect:{effect}", type_=f"effect.{effect}")

    def schedule(self, timer: TimerSpec) -> None:
        """A countdown timer row and the task that delivers it."""
        name = timer.task_name(self.order_id)
        kind, fire_at = str(timer.kind), timer.fire_at.isoformat()
        self.timers.append(TimerRow(order_id=self.order_id, kind=kind,
                                    reminder_index=timer.reminder_index,
                                    deadline_version=timer.deadline_version,
                                    fire_at=fire_at, task_name=name))
        payload = TimerPayload(order_id=self.order_id, kind=kind,
                               reminder_index=timer.reminder_index,
                               deadline_version=timer.deadline_version)
        self.outbox.append(OutboxRow(OutboxKind.TASK_CREATE, self.order_id, {
            "name": name, "schedule_time": fire_at, "body": payload.to_dict(),
            **_trace_headers("headers"),
        }))

    def unschedule(self, task_name: str) -> None:
        self.outbox.append(OutboxRow(OutboxKind.TASK_DELETE, self.order_id, {"name": task_name}))

    def _publish(self, topic: str, body: Payload, *, key: str, type_: str) -> None:
        # `message_key` is stable across re-publishes: subscribers dedupe on it. The trace
        # context rides along as an attribute (one trace per order: shared/trace.py).
        self.outbox.append(OutboxRow(OutboxKind.PUBLISH, self.order_id, {
            "topic": topic,
            "ordering_key": self.order_id,
            "attributes": {"type": type_, "order_id": self.order_id,
                           "request_id": self.request_id or "", "message_key": key,
                           **_trace_headers()},
            "data": body.to_dict(),
        }))


def _trace_headers(under: str | None = None) -> dict[str, Any]:
    """The current trace context to store with an outbox row: the `traceparent` attribute of
    a message (or, `under` a key, a task's request headers); nothing outside a trace."""
    value = tracing.traceparent()
    if value is None:
        return {}
    headers = {tracing.HEADER: value}
    return {under: headers} if under else headers
