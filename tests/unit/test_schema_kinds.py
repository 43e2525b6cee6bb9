"""The schema's kind constraints allow exactly their enum's values."""

from __future__ import annotations

import pytest
from sqlalchemy import CheckConstraint

from shared.db.migrate import KIND_CHECKS, KIND_CHECKS_AT, MIGRATIONS, kind_checks, kinds_fingerprint
from shared.db.schema import allowed_values, metadata, one_of
from shared.domain.model import Email, Status, TimerKind
from shared.domain.rows import OutboxKind

ENUMS = {
    "verification_sessions_status": Status,
    "countdown_timers_kind": TimerKind,
    "outbox_kind": OutboxKind,
    "email_sends_kind": Email,
}


def _constraint(name: str) -> CheckConstraint:
    (found,) = [c for t in metadata.tables.values() for c in t.constraints
                if isinstance(c, CheckConstraint) and c.name == name]
    return found


@pytest.mark.parametrize("name", sorted(ENUMS))
def test_a_kind_constraint_allows_exactly_its_enums_values(name):
    assert allowed_values(_constraint(name)) == {str(kind) for kind in ENUMS[name]}


def test_the_migration_rebuilds_every_kind_constraint():
    assert set(KIND_CHECKS) == set(ENUMS)


def test_a_kind_that_is_not_a_plain_word_is_refused():
    with pytest.raises(ValueError):
        one_of("kind", ["x') OR (true"], "bad")


def test_a_changed_kind_comes_with_the_migration_that_lets_existing_databases_store_it():
    steps = [version for version, step in enumerate(MIGRATIONS, start=1) if step is kind_checks]
    assert sorted(KIND_CHECKS_AT) == steps
    assert KIND_CHECKS_AT[steps[-1]] == kinds_fingerprint(), (
        "a kind enum changed: append kind_checks to MIGRATIONS and add "
        f"{len(MIGRATIONS) + 1}: {kinds_fingerprint()!r} to KIND_CHECKS_AT")
