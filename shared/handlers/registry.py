"""One table from command type to the use case that handles it, with its dependencies taken
from the composition root's container. `shared.bootstrap.handle` is the only caller."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.domain.messages import (
    EffectRun,
    EmailJob,
    EventMessage,
    IgnoredDelivery,
    OrderAction,
    OrderPlaced,
    ProviderDecision,
    ProviderEvent,
    StoreAction,
    StoreCancelled,
    TimerPayload,
)
from shared.domain.model import OrderActionKind
from shared.domain import operator_commands as commands
from shared.handlers import analytics, effects, emails, intake, refunds, store_actions, timers, transitions
from shared.handlers.result import Result

# (container, command, request id) -> the use case's result
Handler = Callable[[Any, Any, "str | None"], Result]

# What each kind of order action asks for.
ORDER_ACTIONS: dict[OrderActionKind, Handler] = {
    OrderActionKind.REFUND: lambda c, cmd, rid: refunds.request_refund(c.db, c.settings, c.refund_gateway,
                                                                       cmd, now=c.clock.now()),
}


def _inbound(handler) -> Handler:
    return lambda c, cmd, rid: handler(c.db, c.settings, cmd, now=c.clock.now(), request_id=rid)


def _inbound_with_stores(handler) -> Handler:
    """An input whose transition may ask the store for an action (the configured connectors)."""
    return lambda c, cmd, rid: handler(c.db, c.settings, cmd, now=c.clock.now(), request_id=rid, stores=c.stores)


HANDLERS: dict[type, Handler] = {
    OrderPlaced: _inbound_with_stores(intake.place_order),
    StoreCancelled: _inbound_with_stores(intake.cancel_order),
    ProviderDecision: _inbound_with_stores(intake.record_decision),
    ProviderEvent: _inbound(intake.record_provider_event),
    IgnoredDelivery: _inbound(intake.record_ignored),
    TimerPayload: lambda c, cmd, rid: timers.fire(c.db, cmd, now=c.clock.now(), request_id=rid, stores=c.stores),
    EmailJob: lambda c, cmd, rid: emails.send_email(c.db, c.settings, c.email_sender,
                                                    c.verification_provider, cmd, now=c.clock.now()),
    OrderAction: lambda c, cmd, rid: ORDER_ACTIONS[cmd.kind](c, cmd, rid),
    StoreAction: lambda c, cmd, rid: store_actions.perform(c.db, c.settings, c.stores, cmd, now=c.clock.now()),
    EffectRun: lambda c, cmd, rid: effects.perform(c.db, c.settings, cmd, now=c.clock.now()),
    EventMessage: lambda c, cmd, rid: analytics.record_event(c.db, cmd),
    # The operator's, from the console and the CLI.
    commands.VerifyOrder: lambda c, cmd, rid: transitions.verify(c.db, c.settings, cmd, now=c.clock.now(),
                                                                 stores=c.stores),
    commands.CancelOrder: lambda c, cmd, rid: transitions.cancel(c.db, cmd, now=c.clock.now(), stores=c.stores),
    commands.ExtendDeadline: lambda c, cmd, rid: transitions.extend(c.db, c.settings, cmd, now=c.clock.now()),
    commands.ResendLink: lambda c, cmd, rid: transitions.resend(c.db, cmd, now=c.clock.now()),
    commands.RecordRefund: lambda c, cmd, rid: transitions.record_refund(c.db, cmd, now=c.clock.now()),
    commands.RetryStoreAction: lambda c, cmd, rid: transitions.retry_store(c.db, cmd, now=c.clock.now()),
    commands.RetryEffect: lambda c, cmd, rid: transitions.retry_effect(c.db, cmd, now=c.clock.now()),
    commands.RetryParked: lambda c, cmd, rid: transitions.retry(c.db, cmd, now=c.clock.now()),
    commands.RevokeCustomer: lambda c, cmd, rid: transitions.revoke_customer(c.db, cmd, now=c.clock.now()),
    commands.ForgetCustomer: lambda c, cmd, rid: transitions.forget_customer(c.db, c.settings, cmd,
                                                                             now=c.clock.now(), stores=c.stores),
}
