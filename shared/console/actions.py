"""Every operator action by name, for the console and the CLI alike: the shared transitions,
recorded with the operator, then relayed. A reason is a code from the action's fixed list
(`shared.domain.reasons`: 400 for any other); a note stays in the database only."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from shared.bootstrap import Container
from shared.config import TIMER_HORIZON, parse_duration
from shared.domain import fields
from shared.errors import ConfigError, PermanentError
from shared.handlers import customers, intake, operator, timers
from shared.handlers.result import Result


class BadAction(PermanentError):
    status = 400
    code = "bad_action"


@dataclass(frozen=True)
class Request:
    order_id: str
    operator: str
    reason: str | None = None  # a code of the action's list (`shared.domain.reasons`), never free text
    note: str | None = None  # at most 200 characters, kept in the database only (never published)
    duration: str | None = None
    store_action: str | None = None  # `action:connector`, for retry-store-action
    age_checked: bool = False  # a verify: the operator checked the customer's age (verify once records it)


def _verify(c: Container, r: Request) -> Result:
    return intake.operator_action(c.db, r.order_id, "verify", operator=r.operator, now=c.clock.now(),
                                  reason=r.reason, note=r.note, age_checked=r.age_checked,
                                  reverify_after=c.settings.reuse.reverify_after, stores=c.stores)


def _revoke(c: Container, r: Request) -> Result:
    return customers.revoke(c.db, r.order_id, operator=r.operator, reason=r.reason or "", note=r.note,
                            now=c.clock.now())


def _cancel(c: Container, r: Request) -> Result:
    return intake.operator_action(c.db, r.order_id, "cancel", operator=r.operator, now=c.clock.now(),
                                  reason=r.reason, note=r.note, stores=c.stores)


def _extend(c: Container, r: Request) -> Result:
    now = c.clock.now()
    try:
        deadline = now + parse_duration(r.duration or "", "duration")
    except (ConfigError, OverflowError):  # OverflowError: past the year 9999
        raise BadAction("the new deadline needs a duration from now, like 48h", field="duration") from None
    if deadline - now > TIMER_HORIZON:
        raise BadAction("the new deadline must be at most 720h (30 days) from now: Cloud Tasks sets no "
                        "timer further ahead", field="duration")
    return timers.extend_deadline(c.db, c.settings, r.order_id, deadline, now=now,
                                  actor=operator.actor(r.operator))


def _resend(c: Container, r: Request) -> Result:
    return operator.resend_link(c.db, r.order_id, operator=r.operator, now=c.clock.now())


def _retry_store_action(c: Container, r: Request) -> Result:
    return operator.retry_store_action(c.db, r.order_id, r.store_action, operator=r.operator, now=c.clock.now())


def _refund(outcome: str) -> Callable[[Container, Request], Result]:
    def close(c: Container, r: Request) -> Result:
        return operator.close_refund(c.db, r.order_id, outcome, operator=r.operator, now=c.clock.now(),
                                     reason=r.reason, note=r.note)
    return close


ACTIONS: dict[str, Callable[[Container, Request], Result]] = {
    "verify": _verify,
    "cancel": _cancel,
    "extend": _extend,
    "resend-link": _resend,
    "revoke": _revoke,
    "refund-done": _refund("refunded"),
    "refund-failed": _refund("failed"),
    "retry-store-action": _retry_store_action,
}


def run(c: Container, action: str, request: Request) -> Result:
    """Apply one named action; relay its side effects when it applied."""
    handler = ACTIONS.get(action)
    if handler is None:
        raise BadAction(f"unknown action {action!r}")
    result = handler(c, request)
    if result.accepted:
        c.relay([request.order_id])
    return result


def retry(c: Container, outbox_id: int | None, operator_name: str) -> list[str]:
    """Retry one parked outbox row (or all); relay them now. The order ids touched."""
    order_ids = operator.retry_parked(c.db, outbox_id, operator=operator_name, now=c.clock.now())
    if order_ids:
        c.relay(order_ids)
    return order_ids


def forget(c: Container, email: str, operator_name: str) -> customers.Erasure:
    """Forget a customer by email (erasure on request); relay the cancelled sessions' effects."""
    try:
        address = fields.email(email.strip(), "email")
    except PermanentError:
        raise BadAction("forget needs the customer's email address", field="email") from None
    erasure = customers.forget(c.db, c.settings, address, operator=operator_name, now=c.clock.now(),
                               stores=c.stores)
    if erasure.cancelled:
        c.relay(erasure.cancelled)
    return erasure
