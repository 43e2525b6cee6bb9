"""Session lifecycle (DESIGN.md section 3) as pure data and functions."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class Status(StrEnum):
    PENDING = "pending"
    IN_REVIEW = "in_review"
    VERIFIED = "verified"
    DECLINED = "declined"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


TERMINAL = frozenset({Status.VERIFIED, Status.DECLINED, Status.EXPIRED, Status.CANCELLED})
OPEN = (Status.PENDING, Status.IN_REVIEW)


class Decision(StrEnum):
    """What the provider said, by Veriff's decision codes."""

    APPROVED = "approved"
    DECLINED = "declined"
    RESUBMISSION_REQUESTED = "resubmission_requested"
    EXPIRED = "expired"
    ABANDONED = "abandoned"
    REVIEW = "review"


VERIFF_CODES = {
    9001: Decision.APPROVED,
    9102: Decision.DECLINED,
    9103: Decision.RESUBMISSION_REQUESTED,
    9104: Decision.EXPIRED,  # Veriff uses 9104 for both expired and abandoned
    9121: Decision.REVIEW,
}


class Event(StrEnum):
    ORDER_RECEIVED = "order.received"
    ORDER_DUPLICATE = "order.duplicate"
    ORDER_CANCELLED = "order.cancelled"
    VERIFICATION_REQUESTED = "verification.requested"
    APPROVED = "verification.approved"
    DECLINED = "verification.declined"
    RESUBMISSION_REQUESTED = "verification.resubmission_requested"
    PROVIDER_SESSION_EXPIRED = "verification.session_expired"
    IN_REVIEW = "verification.in_review"
    DECISION_IGNORED = "verification.decision_ignored"
    CANCEL_IGNORED = "order.cancel_ignored"
    REMINDER_DUE = "verification.reminder_due"
    EXPIRED = "verification.expired"
    DEADLINE_EXTENDED = "verification.deadline_extended"
    REFUND_REQUESTED = "refund.requested"
    REFUND_COMPLETED = "refund.completed"
    REFUND_FAILED = "refund.failed"
    REFUND_MANUAL = "refund.manual"
    EMAIL_SENT = "customer.email_sent"
    LINK_RESENT = "verification.link_resent"
    OUTBOX_RETRIED = "outbox.retried"


class Email(StrEnum):
    LINK = "link"
    REMINDER = "reminder"
    VERIFIED = "verified"
    DECLINED = "declined"
    EXPIRED = "expired"


@dataclass(frozen=True)
class Transition:
    """A move allowed only from `from_statuses`, with its side effects."""

    from_statuses: tuple[Status, ...]
    to_status: Status
    event: Event
    cancel_timers: bool = False
    refund: bool = False
    email: Email | None = None
    fresh_link: bool = False


DECISION_RULES: dict[Decision, Transition] = {
    Decision.APPROVED: Transition(OPEN, Status.VERIFIED, Event.APPROVED, cancel_timers=True, email=Email.VERIFIED),
    Decision.DECLINED: Transition(
        OPEN, Status.DECLINED, Event.DECLINED, cancel_timers=True, refund=True, email=Email.DECLINED
    ),
    Decision.RESUBMISSION_REQUESTED: Transition(
        OPEN, Status.PENDING, Event.RESUBMISSION_REQUESTED, fresh_link=True
    ),
    Decision.EXPIRED: Transition(
        (Status.PENDING,), Status.PENDING, Event.PROVIDER_SESSION_EXPIRED, fresh_link=True
    ),
    Decision.ABANDONED: Transition(
        (Status.PENDING,), Status.PENDING, Event.PROVIDER_SESSION_EXPIRED, fresh_link=True
    ),
    Decision.REVIEW: Transition((Status.PENDING,), Status.IN_REVIEW, Event.IN_REVIEW),
}

STORE_CANCEL = Transition(OPEN, Status.CANCELLED, Event.ORDER_CANCELLED, cancel_timers=True)

DEADLINE = Transition(
    (Status.PENDING,), Status.EXPIRED, Event.EXPIRED, cancel_timers=True, refund=True, email=Email.EXPIRED
)


# The deadline passed but the link email was never sent: a person decides, never a refund.
LINK_NOT_SENT = Transition((Status.PENDING,), Status.IN_REVIEW, Event.IN_REVIEW)


def applies(rule: Transition, status: Status | str) -> bool:
    """Whether `rule` moves a session that is in `status` (the table's rows)."""
    return Status(status) in rule.from_statuses


def deadline_for(ordered_at: datetime | None, received_at: datetime, window: timedelta) -> tuple[datetime, datetime]:
    """(start, deadline): from the order's own time when sane, else from receipt."""
    start = ordered_at if ordered_at is not None and ordered_at <= received_at else received_at
    return start, start + window


@dataclass(frozen=True)
class TimerSpec:
    kind: str  # "reminder" | "deadline"
    reminder_index: int
    fire_at: datetime
    deadline_version: int

    def task_name(self, order_id: str) -> str:
        return task_name(order_id, self.kind, self.reminder_index, self.deadline_version)


def timers_for(start: datetime, deadline: datetime, offsets: tuple[timedelta, ...], version: int = 1) -> list[TimerSpec]:
    """One timer per reminder offset that falls before the deadline, plus the deadline."""
    timers = [
        TimerSpec("reminder", i, start + offset, version)
        for i, offset in enumerate(offsets)
        if start + offset < deadline
    ]
    timers.append(TimerSpec("deadline", 0, deadline, version))
    return timers


def task_name(order_id: str, kind: str, reminder_index: int, deadline_version: int) -> str:
    """Deterministic Cloud Tasks id; the hash comes first to spread the key range."""
    digest = hashlib.sha256(f"{order_id}\x1f{kind}\x1f{reminder_index}\x1f{deadline_version}".encode()).hexdigest()
    return f"{digest[:32]}-{kind}-{reminder_index}-v{deadline_version}"
