"""Commands (what an input asks for) and the versioned payloads of tasks and messages."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import Decimal
from typing import Any

from shared.domain.model import Decision, Email
from shared.errors import InvalidField

TOPIC_EVENTS = "verification-events"
TOPIC_EMAILS = "customer-emails"
TOPIC_ORDER_ACTIONS = "order-actions"
TOPICS = (TOPIC_EVENTS, TOPIC_EMAILS, TOPIC_ORDER_ACTIONS)


# ---- commands -------------------------------------------------------------


@dataclass(frozen=True)
class OrderPlaced:
    provider: str  # "orders" | "lightspeed"
    event_id: str
    order_id: str
    customer_email: str
    customer_id: str | None = None
    order_total: Decimal | None = None
    currency: str | None = None
    ordered_at: datetime | None = None


@dataclass(frozen=True)
class StoreCancelled:
    provider: str
    event_id: str
    order_id: str


@dataclass(frozen=True)
class ProviderDecision:
    provider: str  # "veriff"
    event_id: str
    order_id: str
    decision: Decision
    verification_id: str
    code: int
    reason_code: int | None = None
    decided_at: datetime | None = None


# ---- payloads -------------------------------------------------------------


class Payload:
    """Versioned message body: `to_dict` / `from_dict` with a `v` field."""

    VERSION = 1

    def to_dict(self) -> dict[str, Any]:
        # Shallow on purpose: field values are already JSON-ready (asdict's deep copy
        # was a tenth of the intake's CPU time).
        return {"v": self.VERSION, **{f.name: getattr(self, f.name) for f in fields(self)}}

    @classmethod
    def from_dict(cls, data: Any):
        if not isinstance(data, dict):
            raise InvalidField("payload must be a JSON object", field="body")
        if data.get("v") != cls.VERSION:
            raise InvalidField(f"unsupported payload version {data.get('v')!r}", field="v")
        names = cls.__dataclass_fields__  # type: ignore[attr-defined]
        missing = [n for n, f in names.items() if n not in data and f.default is f.default_factory]
        if missing:
            raise InvalidField(f"missing {missing[0]}", field=missing[0])
        try:
            return cls(**{n: data[n] for n in names if n in data})
        except (TypeError, ValueError) as exc:
            raise InvalidField(str(exc), field="body") from None


@dataclass(frozen=True)
class TimerPayload(Payload):
    order_id: str
    kind: str
    reminder_index: int
    deadline_version: int

    def __post_init__(self) -> None:
        if self.kind not in ("reminder", "deadline"):
            raise ValueError(f"unknown timer kind {self.kind!r}")
        if not isinstance(self.reminder_index, int) or not isinstance(self.deadline_version, int):
            raise ValueError("reminder_index and deadline_version must be integers")


@dataclass(frozen=True)
class EventMessage(Payload):
    """One lifecycle event, as published on `verification-events`."""

    id: str
    type: str
    order_id: str | None
    occurred_at: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EmailJob(Payload):
    """One customer email to send, on `customer-emails`."""

    order_id: str
    kind: str
    reminder_index: int = 0

    def __post_init__(self) -> None:
        Email(self.kind)


@dataclass(frozen=True)
class OrderAction(Payload):
    """A refund/cancel request for an order, on `order-actions`."""

    order_id: str
    action: str  # "refund"
    reason: str
