"""Domain sets are defined once, in the domain (issue 22 item 3): refundable, terminal, open,
the refund and claim states. SQL predicates, partial indexes and CHECK constraints are built
from them (`schema.one_of`, `schema.sql_in`); no module but the frozen migrations spells a set
again, and each list a migration froze is still the domain's set (or named here as history)."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path

import pytest

from shared.db import reads, redrive, retention, schema
from shared.domain.messages import TOPICS
from shared.stores.base import StoreActionKind
from shared.domain.model import (
    EFFECT_OPEN,
    EMAIL_STATES,
    EffectState,
    STORE_ACTION_OPEN,
    StoreActionState,
    EMAILS,
    LINKED_EMAILS,
    OPEN,
    REFUND_NEEDS_OPERATOR,
    REFUND_OPEN,
    REFUNDABLE,
    TERMINAL,
    TRANSITIONS,
    Email,
    RefundStatus,
    Status,
    TimerState,
)
from shared.handlers import refunds

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted([*(ROOT / "shared").rglob("*.py"), *(ROOT / "functions").rglob("*.py")])
MIGRATIONS = ROOT / "shared" / "db" / "migrate.py"

# `IN ('a', 'b')` in SQL text, and `.in_(("a", "b"))` in SQLAlchemy expressions.
_SQL_LIST = re.compile(r"\bIN\s*\(\s*('[^']*'(?:\s*,\s*'[^']*')*)\s*\)", re.IGNORECASE)
_PY_LIST = re.compile(r"\.in_\(\s*[(\[]\s*((?:\"[^\"]*\"|'[^']*')(?:\s*,\s*(?:\"[^\"]*\"|'[^']*'))*),?\s*[)\]]\s*\)")

DOMAIN_SETS = {
    "Status": set(Status), "OPEN": set(OPEN), "TERMINAL": set(TERMINAL), "REFUNDABLE": set(REFUNDABLE),
    "RefundStatus": set(RefundStatus),
    "REFUND_OPEN": set(REFUND_OPEN), "REFUND_NEEDS_OPERATOR": set(REFUND_NEEDS_OPERATOR),
    "TimerState": set(TimerState), "EMAIL_STATES": set(EMAIL_STATES),
    "StoreActionState": set(StoreActionState), "STORE_ACTION_OPEN": set(STORE_ACTION_OPEN),
    "StoreActionKind": set(StoreActionKind),
    "EffectState": set(EffectState), "EFFECT_OPEN": set(EFFECT_OPEN),
}
# Lists a migration froze that are no longer a domain set (a migration records what it did then).
FROZEN = {("migrate.py", frozenset({"orders", "lightspeed"})),  # v8: the sources of its day
          ("migrate.py", frozenset({"lightspeed", "shopify", "woocommerce"}))}  # v12: the namespaced ones of its day


def literal_lists(path: Path) -> list[frozenset[str]]:
    source = path.read_text(encoding="utf-8")
    return [frozenset(re.findall(r"[\"']([^\"']*)[\"']", found))
            for pattern in (_SQL_LIST, _PY_LIST) for found in pattern.findall(source)]


def test_the_scan_finds_literal_lists():
    assert frozenset({"declined", "expired"}) in literal_lists(MIGRATIONS)
    probe = ROOT / "tests" / "unit" / "probe_sql.txt"
    try:
        probe.write_text("x = text(\"status IN ('pending', 'in_review')\")\ny = c.in_((\"manual\", \"failed\"))\n")
        assert literal_lists(probe) == [frozenset({"pending", "in_review"}), frozenset({"manual", "failed"})]
    finally:
        probe.unlink()


@pytest.mark.parametrize("path", [p for p in SOURCES if p != MIGRATIONS], ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_spells_a_domain_set_again(path):
    assert literal_lists(path) == []


def test_every_list_a_migration_froze_is_a_domain_set_or_named_history():
    for found in literal_lists(MIGRATIONS):
        assert found in map(frozenset, DOMAIN_SETS.values()) or ("migrate.py", found) in FROZEN, sorted(found)


def test_no_sql_names_a_topic_or_the_link_email_by_its_text():
    spelled = re.compile(rf"'({'|'.join(map(re.escape, TOPICS))}|{Email.LINK})'")
    for path in SOURCES:
        if path != MIGRATIONS:
            assert not spelled.search(path.read_text(encoding="utf-8")), path.name


def test_the_rules_that_owe_a_refund_record_it_whatever_status_they_close_in():
    from shared.domain.model import ERASED, STORE_CANCEL
    assert ERASED.refund and ERASED.to_status == STORE_CANCEL.to_status == Status.CANCELLED
    assert not STORE_CANCEL.refund and Status.CANCELLED not in REFUNDABLE


def test_the_sets_are_what_the_transitions_say():
    assert REFUNDABLE == {Status.DECLINED, Status.EXPIRED} <= TERMINAL
    assert {t.to_status for t in TRANSITIONS if t.refund} == REFUNDABLE and refunds.REFUNDABLE is REFUNDABLE
    assert all(t.to_status in REFUNDABLE for t in TRANSITIONS if t.refund)
    assert LINKED_EMAILS == {kind for kind, spec in EMAILS.items() if spec.needs_link} == {Email.LINK, Email.REMINDER}
    assert set(REFUND_NEEDS_OPERATOR) < set(REFUND_OPEN) < set(RefundStatus)


def test_the_sql_is_built_from_the_sets():
    assert schema.sql_in("status", REFUNDABLE) == "status IN ('declined', 'expired')"
    assert schema.sql_in("s", {Status.CANCELLED, Status.PENDING}) == "s IN ('pending', 'cancelled')"
    for values in ([], [StrEnum("Odd", {"QUOTE": "it's"}).QUOTE]):
        with pytest.raises(ValueError):
            schema.sql_in("x", values)
    owed = next(str(i.dialect_options["postgresql"]["where"]) for i in schema.verification_sessions.indexes
                if i.name == "verification_sessions_refund_owed")
    # Owed a refund: what the refunding transition recorded, not a list of statuses (an erasure
    # closes `cancelled` and owes one; a store's cancellation closes `cancelled` and owes none).
    assert owed == schema.REFUND_OWED and schema.REFUND_OWED in redrive._REFUNDS_TO_REDRIVE.text
    assert "status IN" not in redrive._REFUNDS_TO_REDRIVE.text
    assert retention._CLOSED == schema.sql_in("status", TERMINAL)
    assert reads.OPEN.text == schema.sql_in("verification_sessions.status", OPEN)
    checks = {c.name: schema.allowed_values(c) for table in schema.metadata.tables.values()
              for c in table.constraints if c.name and c.name.endswith(("_state", "_refund_status"))}
    assert checks == {"verification_sessions_refund_status": set(RefundStatus),
                      "countdown_timers_state": set(TimerState), "email_sends_state": set(EMAIL_STATES),
                      "store_actions_state": set(StoreActionState), "effect_runs_state": set(EffectState)}

