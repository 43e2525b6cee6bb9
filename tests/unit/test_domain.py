"""The lifecycle table of DESIGN.md section 3, as pure functions."""

from datetime import datetime, timedelta, timezone

import pytest

from shared.domain.model import (
    DEADLINE,
    DECISION_RULES,
    STORE_CANCEL,
    TERMINAL,
    Decision,
    Email,
    Event,
    Status,
    applies,
    deadline_for,
    is_stale,
    task_name,
    timers_for,
)

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("decision, status, to_status", [
    (Decision.APPROVED, Status.PENDING, Status.VERIFIED),
    (Decision.APPROVED, Status.IN_REVIEW, Status.VERIFIED),
    (Decision.DECLINED, Status.PENDING, Status.DECLINED),
    (Decision.DECLINED, Status.IN_REVIEW, Status.DECLINED),
    (Decision.RESUBMISSION_REQUESTED, Status.PENDING, Status.PENDING),
    (Decision.RESUBMISSION_REQUESTED, Status.IN_REVIEW, Status.PENDING),
    (Decision.EXPIRED, Status.PENDING, Status.PENDING),
    (Decision.ABANDONED, Status.PENDING, Status.PENDING),
    (Decision.REVIEW, Status.PENDING, Status.IN_REVIEW),
])
def test_decision_moves_open_sessions(decision, status, to_status):
    rule = DECISION_RULES[decision]
    assert applies(rule, status)
    assert rule.to_status == to_status


@pytest.mark.parametrize("decision", list(Decision))
@pytest.mark.parametrize("status", sorted(TERMINAL))
def test_terminal_states_never_change(decision, status):
    assert not applies(DECISION_RULES[decision], status)
    assert not applies(STORE_CANCEL, status)
    assert not applies(DEADLINE, status)


def test_side_effects_per_decision():
    approved, declined = DECISION_RULES[Decision.APPROVED], DECISION_RULES[Decision.DECLINED]
    assert approved.cancel_timers and not approved.refund and approved.email is Email.VERIFIED
    assert declined.cancel_timers and declined.refund and declined.email is Email.DECLINED
    for decision in (Decision.RESUBMISSION_REQUESTED, Decision.EXPIRED, Decision.ABANDONED):
        rule = DECISION_RULES[decision]
        assert rule.fresh_link and not rule.cancel_timers and not rule.refund
    assert DECISION_RULES[Decision.REVIEW].event is Event.IN_REVIEW


def test_review_is_not_expired_by_the_deadline():
    assert not applies(DEADLINE, Status.IN_REVIEW)
    assert applies(DEADLINE, Status.PENDING)
    assert DEADLINE.refund and DEADLINE.email is Email.EXPIRED and DEADLINE.cancel_timers


def test_store_cancel_closes_open_sessions_without_refund():
    assert applies(STORE_CANCEL, Status.PENDING) and applies(STORE_CANCEL, Status.IN_REVIEW)
    assert STORE_CANCEL.to_status is Status.CANCELLED
    assert STORE_CANCEL.cancel_timers and not STORE_CANCEL.refund


def test_deadline_counts_from_receipt():
    # Issue 10 item 6 / DESIGN.md section 3: the window starts when the link can first be sent,
    # not at the order's own creation time (that moved deadlines into the past).
    assert deadline_for(T0, timedelta(hours=72)) == (T0, T0 + timedelta(hours=72))


@pytest.mark.parametrize("ordered_at, stale", [
    (None, False), (T0 + timedelta(minutes=5), False), (T0 - timedelta(days=6, hours=23), False),
    (T0 - timedelta(days=7, seconds=1), True), (T0 - timedelta(days=30), True),
])
def test_orders_older_than_max_order_age_are_stale(ordered_at, stale):
    assert is_stale(ordered_at, T0, timedelta(days=7)) is stale


def test_timers_one_per_reminder_plus_deadline():
    timers = timers_for(T0, T0 + timedelta(hours=72), (timedelta(hours=24), timedelta(hours=48)))
    assert [(t.kind, t.reminder_index, t.fire_at) for t in timers] == [
        ("reminder", 0, T0 + timedelta(hours=24)),
        ("reminder", 1, T0 + timedelta(hours=48)),
        ("deadline", 0, T0 + timedelta(hours=72)),
    ]


def test_reminder_past_the_deadline_is_dropped():
    timers = timers_for(T0, T0 + timedelta(hours=2), (timedelta(hours=1), timedelta(hours=3)))
    assert [t.kind for t in timers] == ["reminder", "deadline"]


def test_task_names_are_deterministic_and_distinct():
    name = task_name("o-1", "deadline", 0, 1)
    assert name == task_name("o-1", "deadline", 0, 1)
    others = {task_name("o-1", "deadline", 0, 2), task_name("o-1", "reminder", 0, 1),
              task_name("o-2", "deadline", 0, 1), task_name("o-1", "reminder", 1, 1)}
    assert name not in others and len(others) == 4
    assert len(name) <= 500 and all(c.isalnum() or c in "-_" for c in name)
