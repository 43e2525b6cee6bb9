"""Commands (what an input asks for) and the versioned payloads of tasks and messages."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import date, datetime
from decimal import Decimal
from typing import Any, ClassVar, get_origin, get_type_hints

from shared.domain import fields as check
from shared.domain.model import Decision, OrderActionKind, ProviderEventKind, TimerKind, email_spec
from shared.errors import InvalidField, PermanentError

TOPIC_EVENTS = "verification-events"
TOPIC_EMAILS = "customer-emails"
TOPIC_ORDER_ACTIONS = "order-actions"
TOPICS = (TOPIC_EVENTS, TOPIC_EMAILS, TOPIC_ORDER_ACTIONS)


# ---- commands -------------------------------------------------------------


@dataclass(frozen=True)
class OrderPlaced:
    provider: str  # a source: "orders", "lightspeed", "shopify", "woocommerce" (`shared.domain.keys`)
    event_id: str
    order_id: str
    customer_email: str
    customer_id: str | None = None
    order_total: Decimal | None = None
    currency: str | None = None
    ordered_at: datetime | None = None  # the store's own order time (staleness; shown to staff)
    store_ref: str | None = None  # the store's own id its API needs (Shopify's order GID), if not the key's


@dataclass(frozen=True)
class StoreCancelled:
    provider: str
    event_id: str
    order_id: str


@dataclass(frozen=True)
class ProviderDecision:
    provider: str  # its name in `shared.providers.registry.PROVIDERS`
    event_id: str
    order_id: str
    decision: Decision
    verification_id: str
    code: int
    reason_code: int | None = None
    decided_at: datetime | None = None
    # Read for the age check only; kept out of repr() so it can never reach a log line.
    birth_date: date | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ProviderEvent:
    """An ID provider's progress event (started, submitted; each provider's codes in its module)."""

    provider: str
    event_id: str
    order_id: str
    kind: ProviderEventKind
    verification_id: str


@dataclass(frozen=True)
class IgnoredDelivery:
    """A signed, well-formed delivery the service records but does not act on (e.g. a walk-in sale)."""

    provider: str
    event_id: str
    order_id: str
    reason: str


InboundCommand = OrderPlaced | StoreCancelled | ProviderDecision | ProviderEvent | IgnoredDelivery


# ---- payloads -------------------------------------------------------------


FieldCheck = Callable[[Any, str], Any]


class Payload:
    """Versioned message body: `to_dict` / `from_dict` with a `v` field.

    `from_dict` trusts nothing: every field is checked by its declared type, and each
    subclass's `__post_init__` adds its own rules; any failure is an InvalidField (a
    permanent error: acknowledged, never acted on). Each field's check is chosen when the
    class is defined, from its resolved type (`typing.get_type_hints`, never the annotation's
    text): a field of a type `_FIELD_CHECKS` does not know is a TypeError at import, so a
    message is never dropped as unparseable for want of a check.
    """

    VERSION = 1
    _checks: ClassVar[dict[str, FieldCheck]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._checks = field_checks(cls)

    @property
    def may_expire(self) -> bool:
        """Whether MAX_MESSAGE_AGE may drop this message: only what loses nothing (a late reminder)."""
        return False

    def to_dict(self) -> dict[str, Any]:
        # Shallow on purpose: field values are already JSON-ready (asdict's deep copy
        # was a tenth of the intake's CPU time); the field names are read once per class.
        data = {"v": self.VERSION}
        for name in _field_names(type(self)):
            data[name] = getattr(self, name)
        return data

    @classmethod
    def from_dict(cls, data: Any):
        if not isinstance(data, dict):
            raise InvalidField("payload must be a JSON object", field="body")
        if data.get("v") != cls.VERSION:
            raise InvalidField("unsupported payload version", field="v")  # never echo input
        names = cls.__dataclass_fields__  # type: ignore[attr-defined]
        missing = [n for n, f in names.items() if n not in data and f.default is f.default_factory]
        if missing:
            raise InvalidField(f"missing {missing[0]}", field=missing[0])
        values = {n: cls._checks[n](data[n], n) for n in names if n in data}
        try:
            return cls(**values)
        except PermanentError:
            raise
        except (TypeError, ValueError):
            raise InvalidField(f"payload is not a valid {cls.__name__}", field="body") from None


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    """A payload class's field names, in order (`dataclasses.fields` builds them anew each call)."""
    return tuple(f.name for f in fields(cls))


def _optional_id(value: Any, name: str) -> str | None:
    return check.identifier(value, name, required=False)


def _optional_integer(value: Any, name: str) -> int | None:
    return None if value is None else check.integer(value, name)


def _json_object(value: Any, name: str) -> dict[str, Any]:
    return check.obj(value, name)


# Every type a payload field may have, by its resolved type (`int | None == Optional[int]`).
_FIELD_CHECKS: dict[Any, FieldCheck] = {
    str: lambda value, name: check.text(value, name, max_length=500),
    str | None: _optional_id,
    int: check.integer,
    int | None: _optional_integer,
    dict[str, Any]: _json_object,
}


def field_checks(cls: type) -> dict[str, FieldCheck]:
    """Each field's check, from the class's resolved type hints; TypeError for a type with none."""
    try:
        hints = get_type_hints(cls)
    except NameError as exc:
        raise TypeError(f"{cls.__name__}: a field's type cannot be resolved ({exc})") from None
    checks = {}
    for name, hint in hints.items():
        if get_origin(hint) is ClassVar:
            continue
        try:
            checks[name] = _FIELD_CHECKS[hint]
        except (KeyError, TypeError):  # TypeError: an unhashable hint
            raise TypeError(f"{cls.__name__}.{name}: payload fields of type {hint!r} have no check; "
                            f"use one of {', '.join(map(repr, _FIELD_CHECKS))}") from None
    return checks


def _kind(lookup: Callable[[str], Any], value: str, name: str):
    """`lookup(value)` (an enum, or a spec table's lookup); an unknown value is an InvalidField."""
    try:
        return lookup(value)
    except ValueError:
        raise InvalidField(f"unknown {name}", field=name) from None


@dataclass(frozen=True)
class TimerPayload(Payload):
    order_id: str
    kind: str
    reminder_index: int
    deadline_version: int

    def __post_init__(self) -> None:
        _kind(TimerKind, self.kind, "kind")
        check.integer(self.reminder_index, "reminder_index")
        check.integer(self.deadline_version, "deadline_version", minimum=1)

    @property
    def timer_kind(self) -> TimerKind:
        return TimerKind(self.kind)


@dataclass(frozen=True)
class EventMessage(Payload):
    """One lifecycle event, as published on `verification-events`."""

    id: str
    type: str
    order_id: str | None
    occurred_at: str
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check.timestamp(self.occurred_at, "occurred_at")
        if "seconds_to_verify" in self.data:
            check.integer(self.data["seconds_to_verify"], "data.seconds_to_verify")
        if "kind" in self.data:
            check.text(self.data["kind"], "data.kind")


@dataclass(frozen=True)
class EmailJob(Payload):
    """One customer email to send, on `customer-emails`."""

    order_id: str
    kind: str
    reminder_index: int = 0

    def __post_init__(self) -> None:
        _kind(email_spec, self.kind, "kind")
        check.integer(self.reminder_index, "reminder_index")

    @property
    def may_expire(self) -> bool:
        return email_spec(self.kind).may_expire


@dataclass(frozen=True)
class OrderAction(Payload):
    """A refund/cancel request for an order, on `order-actions`."""

    order_id: str
    action: str  # an OrderActionKind
    reason: str

    def __post_init__(self) -> None:
        _kind(OrderActionKind, self.action, "action")

    @property
    def kind(self) -> OrderActionKind:
        return OrderActionKind(self.action)


# The store actions a `StoreAction` may carry (`shared.stores.base.StoreActionKind` values; the
# domain does not import the connector seam).
STORE_ACTION_KINDS = ("hold", "release", "cancel_and_refund", "flag_for_review", "note_cancelled")


@dataclass(frozen=True)
class StoreAction(Payload):
    """One store action for one order through one connector, on `order-actions` (DESIGN.md 4b).

    Written with the transition that asks for it (and its `store_actions` row, the claim);
    `connector` names the registry's connector (`shopify`, `outcome_webhook`). What the store
    is told (reason, time, the store's ids) is read from that row and the session."""

    order_id: str
    action: str
    connector: str

    def __post_init__(self) -> None:
        if self.action not in STORE_ACTION_KINDS:
            raise InvalidField("unknown action", field="action")
        check.identifier(self.connector, "connector")


@dataclass(frozen=True)
class EffectRun(Payload):
    """One registered side effect (`shared.effects`) to perform for one order, on `order-actions`.

    Written with the transition that asks for it (and its `effect_runs` row, the claim); which
    names exist is the registry's to say (the performer ignores one it does not know)."""

    order_id: str
    effect: str

    def __post_init__(self) -> None:
        check.identifier(self.effect, "effect")


class OrderActions:
    """The messages of `order-actions`: a refund request (`OrderAction`), a store action
    (`StoreAction`, which names its `connector`) or a registered side effect (`EffectRun`, which
    names its `effect`). `from_dict` returns the one the body is."""

    @staticmethod
    def from_dict(data: Any) -> OrderAction | StoreAction | EffectRun:
        if isinstance(data, dict) and "connector" in data:
            return StoreAction.from_dict(data)
        if isinstance(data, dict) and "effect" in data:
            return EffectRun.from_dict(data)
        return OrderAction.from_dict(data)
