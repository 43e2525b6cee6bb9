"""Which store actions a transition writes, and through which connectors (no I/O)."""

from __future__ import annotations

import pytest

from shared.config import StoreSettings
from shared.db.schema import allowed_values, store_actions
from shared.domain.messages import STORE_ACTION_KINDS, OrderAction, OrderActions, StoreAction
from shared.domain.model import (
    APPROVAL_RULES,
    DEADLINE,
    DECISION_RULES,
    LINK_NOT_SENT,
    STORE_ACTION_AT,
    STORE_CANCEL,
    AgeCheck,
    Decision,
)
from shared.errors import InvalidField
from shared.stores import registry
from shared.stores.base import ActionResult, StoreActionKind
from shared.stores.registry import NO_STORES, StoreRegistry
from tests.stores import use_connector

HOOK = {"OUTCOME_WEBHOOK_URL": "https://hooks.example.com/outcomes", "OUTCOME_WEBHOOK_SECRET": "whsec_" + "a" * 44}


class Holder:
    source = "shopify"
    actions = frozenset({StoreActionKind.HOLD, StoreActionKind.RELEASE, StoreActionKind.CANCEL_AND_REFUND})

    def perform(self, kind, order):
        return ActionResult()


def test_every_action_kind_is_one_the_message_and_the_table_accept():
    assert set(STORE_ACTION_KINDS) == {str(k) for k in StoreActionKind}
    check = next(c for c in store_actions.constraints if getattr(c, "name", None) == "store_actions_action")
    assert allowed_values(check) == set(STORE_ACTION_KINDS)
    assert set(STORE_ACTION_AT.values()) <= set(STORE_ACTION_KINDS)


@pytest.mark.parametrize("rule,action", [
    (DECISION_RULES[Decision.APPROVED], "release"),
    (APPROVAL_RULES[AgeCheck.UNDERAGE], "cancel_and_refund"),
    (DECISION_RULES[Decision.DECLINED], "cancel_and_refund"),
    (DEADLINE, "cancel_and_refund"),
    (DECISION_RULES[Decision.REVIEW], "flag_for_review"),
    (APPROVAL_RULES[AgeCheck.MISSING], "flag_for_review"),
    (LINK_NOT_SENT, "flag_for_review"),
    (STORE_CANCEL, "note_cancelled"),
    (DECISION_RULES[Decision.RESUBMISSION_REQUESTED], None),  # pending stays pending: nothing
    (DECISION_RULES[Decision.EXPIRED], None),
])
def test_each_transition_asks_for_its_store_action(rule, action):
    assert rule.store_action == action


def test_the_registry_decides_per_source_and_action(monkeypatch):
    use_connector(monkeypatch, "shopify", lambda stores: Holder())
    use_connector(monkeypatch, "woocommerce", lambda stores: None)  # not configured
    stores = StoreRegistry.from_settings(StoreSettings.from_env(HOOK))
    assert stores.connectors_for("shopify", "hold") == ("shopify", "outcome_webhook")
    assert stores.connectors_for("shopify", "flag_for_review") == ("outcome_webhook",)  # Holder does not flag
    assert stores.connectors_for("shopify", "note_cancelled") == ("outcome_webhook",)
    assert stores.connectors_for("woocommerce", "hold") == ("outcome_webhook",)
    assert stores.connectors_for("orders", "release") == ("outcome_webhook",)
    assert stores.refunds("shopify") and not stores.refunds("orders") and not stores.refunds("lightspeed")
    assert stores.acts("shopify") and not stores.acts("outcome_webhook")

    nothing = StoreRegistry.from_settings(StoreSettings.from_env({}))
    assert nothing.connectors_for("orders", "hold") == () == NO_STORES.connectors_for("shopify", "hold")


def test_order_actions_parse_into_a_refund_or_a_store_action():
    assert isinstance(OrderActions.from_dict({"v": 1, "order_id": "o", "action": "refund", "reason": "expired"}),
                      OrderAction)
    parsed = OrderActions.from_dict(StoreAction("shopify:1", "hold", "shopify").to_dict())
    assert parsed == StoreAction("shopify:1", "hold", "shopify")
    for bad in ({"v": 1, "order_id": "o", "action": "ship", "connector": "shopify"},
                {"v": 1, "order_id": "o", "action": "hold", "connector": ""},
                {"v": 2, "order_id": "o", "action": "hold", "connector": "shopify"}):
        with pytest.raises(InvalidField):
            OrderActions.from_dict(bad)
