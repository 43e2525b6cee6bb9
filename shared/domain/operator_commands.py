"""What an operator asks for, from the console or the CLI: one command per action, handled like
every other command (`shared.bootstrap.handle`, `shared.handlers.registry.HANDLERS`), so the
use case, its unit of work and the relay of what it committed are the same from both.

`operator` is who acts: the console's IAP-verified email, or the CLI's `cli:<database user>
(<--by>)` (`shared.handlers.transitions.operator_actor` spells the event's actor). A `reason` is a
code from the action's fixed list (`shared.domain.reasons`: BadReason for any other); a `note`
stays in the database only."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from shared.errors import PermanentError


class BadAction(PermanentError):
    """An operator's action the service cannot take as asked (400, naming the field)."""

    status = 400
    code = "bad_action"


class Refused(PermanentError):
    """An action that does not apply to the order as it is now (409): a retry of a run that is
    not failed (due, in flight, done, or never asked for)."""

    status = 409
    code = "conflict"


class RefundOutcome(StrEnum):
    """How a refund done by hand ended (`RecordRefund`)."""

    REFUNDED = "refunded"
    FAILED = "failed"


@dataclass(frozen=True)
class VerifyOrder:
    order_id: str
    operator: str
    reason: str | None = None  # a `VerifyReason` code
    note: str | None = None
    age_checked: bool = False  # the operator checked the customer's age (verify once records the customer)


@dataclass(frozen=True)
class CancelOrder:
    order_id: str
    operator: str
    reason: str | None = None  # a `CancelReason` code
    note: str | None = None


@dataclass(frozen=True)
class ExtendDeadline:
    order_id: str
    operator: str
    duration: str | None = None  # the new deadline from now, like `48h` (BadAction for anything else)


@dataclass(frozen=True)
class ResendLink:
    order_id: str
    operator: str


@dataclass(frozen=True)
class RecordRefund:
    """A refund done by hand: `refunded` (from manual or failed) or `failed` (from manual)."""

    order_id: str
    operator: str
    outcome: RefundOutcome
    reason: str | None = None  # a `RefundDoneReason` / `RefundFailedReason` code
    note: str | None = None


@dataclass(frozen=True)
class RetryStoreAction:
    order_id: str
    operator: str
    store_action: str | None = None  # `action:connector`, as the order page names it


@dataclass(frozen=True)
class RetryEffect:
    """A registered side effect that failed for good (`effect_runs` failed) is asked again: due,
    a fresh attempt budget, its message re-published. Refused (409) unless it failed."""

    order_id: str
    operator: str
    effect: str | None = None  # the effect's name, as the order page lists it


@dataclass(frozen=True)
class RevokeCustomer:
    order_id: str
    operator: str
    reason: str | None = None  # a `RevokeReason` code (required)
    note: str | None = None


@dataclass(frozen=True)
class ForgetCustomer:
    """Erase a customer's email everywhere (the right to erasure); answers an `Erasure`."""

    email: str
    operator: str


@dataclass(frozen=True)
class RetryParked:
    """Make a parked outbox row due again (every parked row when `outbox_id` is None); answers
    the order ids it touched."""

    outbox_id: int | None
    operator: str


OperatorCommand = (VerifyOrder | CancelOrder | ExtendDeadline | ResendLink | RecordRefund | RetryStoreAction
                   | RetryEffect | RevokeCustomer | ForgetCustomer | RetryParked)
