"""The ports every adapter implements, beside the message types they carry. The composition
root (`shared.bootstrap`) picks one implementation of each; handlers and `shared.emails` depend
on these, never on an adapter."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any, Protocol


class Outcome(StrEnum):
    CREATED = "created"
    ALREADY_EXISTS = "already_exists"
    DELETED = "deleted"
    NOT_FOUND = "not_found"


@dataclass(frozen=True)
class TimerTask:
    """A delayed HTTP call to `timer_expiry`. `name` is the task id, not the full path."""

    name: str
    schedule_time: datetime
    payload: dict[str, Any]
    # Request headers to send with it besides the queue's own (the order's `traceparent`).
    headers: dict[str, str] = field(default_factory=dict)


class TaskScheduler(Protocol):
    # How many of its calls the outbox relay may make at once (1: one after another).
    parallel_calls: int

    def create(self, task: TimerTask, *, timeout: float | None = None) -> Outcome:
        """CREATED, or ALREADY_EXISTS when a task of that name exists (or existed recently).
        Raises TransientError for anything else. `timeout` bounds the call, retries included."""

    def delete(self, name: str, *, timeout: float | None = None) -> Outcome:
        """DELETED, or NOT_FOUND when no such task is waiting. Raises TransientError otherwise."""

    def check(self) -> None:
        """Raise TransientError when the queue cannot be reached (one cheap call)."""


@dataclass(frozen=True)
class OutgoingMessage:
    topic: str
    data: bytes
    ordering_key: str
    attributes: dict[str, str] = field(default_factory=dict)


class EventPublisher(Protocol):
    def publish_batch(self, messages: Sequence[OutgoingMessage], *,
                      timeout: float | None = None) -> list[str | Exception]:
        """Publish all, wait for each (at most `timeout` s in all); per message its id, or the
        error it failed with."""

    def check(self) -> None:
        """Raise TransientError when the topics cannot be reached."""


# An email's kind travels in this header, so a sender can log it without reading address or body.
KIND_HEADER = "X-Verification-Email"


@dataclass(frozen=True)
class EmailMessage:
    to: str
    subject: str
    text: str
    html: str
    headers: dict[str, str] = field(default_factory=dict)
    # What makes two sends the same email (the retry of one claim, say after a crash between
    # the send and its record): a sender derives the Message-ID from it, so that a repeat
    # carries the first send's Message-ID and mail clients can show it once. None: a fresh one.
    repeat_key: str | None = None


class EmailSender(Protocol):
    def send(self, message: EmailMessage) -> None:
        """Send or raise TransientError (retry) / PermanentError (do not)."""


@dataclass(frozen=True)
class ProviderSession:
    session_id: str
    url: str


class VerificationProvider(Protocol):
    def create_session(self, order_id: str) -> ProviderSession:
        """Open a provider session whose vendorData is the session key (`shared.domain.keys`)."""


class RefundResult(StrEnum):
    REFUNDED = "refunded"
    FAILED = "failed"
    MANUAL = "manual"


class RefundGateway(Protocol):
    def refund(self, order_id: str, idempotency_key: str, reason: str) -> RefundResult:
        """Ask the store to refund/cancel the order of session key `order_id` (the store is told
        its own id and source: `shared.domain.keys.ref`); TransientError when it should be retried."""


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)
