"""The side-effect seam (`shared.effects`): an effect's name and retry rule, the registry's check
of names, the row its transition writes, and its message on `order-actions`."""

from __future__ import annotations

from dataclasses import fields, replace

import pytest

from shared.db.recordsets import TABLES, insert_from_json
from shared.db import outbox
from shared.domain import model
from shared.domain.effects import Effects
from shared.domain.messages import EffectRun, OrderActions, StoreAction, OrderAction
from shared.domain.rows import EffectRunRow
from shared.effects import Effect, registry
from shared.errors import InvalidField


def _noop(ctx, order) -> None:
    return None


def test_an_effect_is_named_in_lower_case_words_and_is_tried_at_least_once():
    for bad in ("", "Acme", "acme-notice", "1acme", "acme notice"):
        with pytest.raises(ValueError):
            Effect(bad, _noop)
    with pytest.raises(ValueError):
        Effect("acme", _noop, max_attempts=0)
    assert Effect("acme_notice_2", _noop).max_attempts == 5


def test_a_retry_waits_longer_each_time_up_to_its_cap():
    effect = Effect("acme", _noop, first_backoff_seconds=10, max_backoff_seconds=60)
    assert [effect.retry_in(n) for n in (1, 2, 3, 4, 5, 100)] == [10, 20, 40, 60, 60, 60]


def test_the_registry_refuses_a_name_it_does_not_hold(monkeypatch):
    with pytest.raises(LookupError, match="acme_notice"):
        registry.require(("acme_notice",))
    monkeypatch.setitem(registry.EFFECTS, "acme_notice", Effect("acme_notice", _noop))
    assert registry.require(("acme_notice",)) == ("acme_notice",)
    assert registry.names() == sorted(registry.EFFECTS) and registry.effect("acme_notice").name == "acme_notice"
    assert registry.effect("nobody") is None


def test_every_transition_names_only_registered_effects():
    rules = [*model.TRANSITIONS, model.ERASED, model.RETENTION_CLOSED, model.RETURNING_CUSTOMER,
             model.RETURNING_CUSTOMER_TOLD, model.STORE_CANCEL]
    for rule in rules:
        assert registry.require(rule.effects) == rule.effects
    assert all(name == effect.name for name, effect in registry.EFFECTS.items())


def test_the_run_row_is_its_table_and_a_second_ask_adds_nothing():
    table = TABLES[EffectRunRow]
    names = [f.name for f in fields(EffectRunRow)]
    assert set(names) <= set(table.columns.keys())
    required = {c.name for c in table.columns if not c.nullable and c.server_default is None}
    assert required <= set(names)
    statement = insert_from_json(EffectRunRow, "SOURCE")
    assert statement.startswith("INSERT INTO effect_runs (order_id, effect, reason)")
    assert statement.endswith("ON CONFLICT DO NOTHING")
    assert statement.split("SOURCE")[0] in str(outbox._write_effects_statement((EffectRunRow,)))


def test_a_run_is_its_row_and_its_message_on_order_actions():
    from datetime import datetime, timezone

    fx = Effects("order-1", datetime(2026, 12, 1, tzinfo=timezone.utc))
    fx.effect_run("acme_notice", reason="expired")
    assert fx.effect_runs == [EffectRunRow("order-1", "acme_notice", "expired")]
    (row,) = fx.outbox
    assert row.payload["topic"] == "order-actions"
    assert row.payload["attributes"]["message_key"] == "order-1:effect:acme_notice"
    assert OrderActions.from_dict(row.payload["data"]) == EffectRun("order-1", "acme_notice")
    assert isinstance(OrderActions.from_dict({"v": 1, "order_id": "o", "action": "hold", "connector": "x"}),
                      StoreAction)
    assert isinstance(OrderActions.from_dict({"v": 1, "order_id": "o", "action": "refund", "reason": "r"}),
                      OrderAction)
    with pytest.raises(InvalidField):
        OrderActions.from_dict({"v": 1, "order_id": "o", "effect": ""})


def test_a_transition_names_its_effects_without_a_field_of_its_own():
    rule = replace(model.DEADLINE, effects=("acme_notice",))
    assert rule.effects == ("acme_notice",) and model.DEADLINE.effects == ()


def test_the_readme_counts_a_side_effect_as_the_seam_does():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    where = readme.split("### Where to add", 1)[1].split("## ", 1)[0]
    entry = where.split("- **A side effect of a transition**", 1)[1].split("\n- **", 1)[0]
    for named in ("shared/effects/<name>.py", "Its line in `EFFECTS`", "`effects=(...)`",
                  "tests/functions/test_new_side_effect.py", "tests/acme_effect.py", "no migration"):
        assert named in entry, named
    assert "A new kind of effect is a field there" not in entry
