"""Every operator action by name, for the console and the CLI alike: each name builds its
command (`shared.domain.operator_commands`), and `shared.bootstrap.handle` runs it, as it runs
every other command, and relays what it committed. Nothing here decides a transition or a relay.
A reason is a code from the action's fixed list (`shared.domain.reasons`: 400 for any other);
a note stays in the database only."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from shared import bootstrap
from shared.domain import operator_commands as commands
from shared.domain.operator_commands import BadAction, RefundOutcome
from shared.handlers.result import Result

__all__ = ["ACTIONS", "BadAction", "Request", "command", "forget", "retry", "run"]


@dataclass(frozen=True)
class Request:
    """An action on one order as the console's form or the CLI's arguments give it."""

    order_id: str
    operator: str
    reason: str | None = None  # a code of the action's list (`shared.domain.reasons`), never free text
    note: str | None = None  # at most 200 characters, kept in the database only (never published)
    duration: str | None = None
    store_action: str | None = None  # `action:connector`, for retry-store-action
    effect: str | None = None  # a registered side effect's name, for retry-effect
    age_checked: bool = False  # a verify: the operator checked the customer's age (verify once records it)


# Each action's name (the console's URL, the CLI's subcommand) and the command it asks for.
ACTIONS: dict[str, Callable[[Request], object]] = {
    "verify": lambda r: commands.VerifyOrder(r.order_id, r.operator, reason=r.reason, note=r.note,
                                             age_checked=r.age_checked),
    "cancel": lambda r: commands.CancelOrder(r.order_id, r.operator, reason=r.reason, note=r.note),
    "extend": lambda r: commands.ExtendDeadline(r.order_id, r.operator, duration=r.duration),
    "resend-link": lambda r: commands.ResendLink(r.order_id, r.operator),
    "revoke": lambda r: commands.RevokeCustomer(r.order_id, r.operator, reason=r.reason, note=r.note),
    "refund-done": lambda r: commands.RecordRefund(r.order_id, r.operator, RefundOutcome.REFUNDED,
                                                   reason=r.reason, note=r.note),
    "refund-failed": lambda r: commands.RecordRefund(r.order_id, r.operator, RefundOutcome.FAILED,
                                                     reason=r.reason, note=r.note),
    "retry-store-action": lambda r: commands.RetryStoreAction(r.order_id, r.operator, store_action=r.store_action),
    "retry-effect": lambda r: commands.RetryEffect(r.order_id, r.operator, effect=r.effect),
}


def command(action: str, request: Request):
    """The command a named action asks for (BadAction for a name no action has)."""
    build = ACTIONS.get(action)
    if build is None:
        raise BadAction(f"unknown action {action!r}")
    return build(request)


def run(action: str, request: Request) -> Result:
    """Apply one named action (its committed side effects relayed by `bootstrap.handle`)."""
    return bootstrap.handle(command(action, request))


def retry(outbox_id: int | None, operator_name: str) -> list[str]:
    """Retry one parked outbox row (or all); relayed now. The order ids touched."""
    return bootstrap.handle(commands.RetryParked(outbox_id, operator_name))


def forget(email: str, operator_name: str):
    """Forget a customer by email (erasure on request): an `Erasure`; the cancelled sessions'
    effects relayed now."""
    return bootstrap.handle(commands.ForgetCustomer(email, operator_name))
