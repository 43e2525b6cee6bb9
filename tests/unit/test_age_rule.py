"""The age rule (issue 10 item 1): age on the decision's date, 29 February, missing dates of birth."""

from __future__ import annotations

from datetime import date

import pytest

from shared.domain.model import APPROVAL_RULES, AgeCheck, Email, Event, Status, age_check, age_on


@pytest.mark.parametrize("birth, day, age", [
    (date(2005, 11, 29), date(2026, 11, 29), 21),  # the 21st birthday itself
    (date(2005, 11, 30), date(2026, 11, 29), 20),  # one day short
    (date(2005, 12, 31), date(2026, 1, 1), 20),
    (date(1967, 3, 30), date(2019, 11, 6), 52),
])
def test_age_in_completed_years(birth, day, age):
    assert age_on(birth, day) == age


@pytest.mark.parametrize("birth, day, age", [
    (date(2004, 2, 29), date(2025, 2, 28), 20),  # common year: not yet on 28 February...
    (date(2004, 2, 29), date(2025, 3, 1), 21),   # ...but on 1 March
    (date(1996, 2, 29), date(2024, 2, 28), 27),  # leap year: the day before
    (date(1996, 2, 29), date(2024, 2, 29), 28),  # leap year: on the day itself
    (date(1996, 2, 29), date(2100, 3, 1), 104),  # 2100 is not a leap year
    (date(1996, 2, 29), date(2100, 2, 28), 103),
])
def test_born_on_29_february_turns_a_year_older_on_1_march_in_common_years(birth, day, age):
    assert age_on(birth, day) == age


@pytest.mark.parametrize("birth, outcome", [
    (date(2005, 11, 29), AgeCheck.PASSED),
    (date(2005, 11, 30), AgeCheck.UNDERAGE),
    (None, AgeCheck.MISSING),
    (date(2027, 1, 1), AgeCheck.MISSING),  # born after the decision: unreadable, a person decides
])
def test_age_check_outcomes(birth, outcome):
    assert age_check(birth, date(2026, 11, 29), 21) is outcome


def test_minimum_age_is_a_parameter():
    assert age_check(date(2008, 11, 29), date(2026, 11, 29), 18) is AgeCheck.PASSED
    assert age_check(date(2008, 11, 29), date(2026, 11, 29), 21) is AgeCheck.UNDERAGE


def test_what_each_outcome_does():
    passed, underage, missing = (APPROVAL_RULES[c] for c in AgeCheck)
    assert (passed.to_status, passed.event, passed.refund) == (Status.VERIFIED, Event.APPROVED, False)
    assert (underage.to_status, underage.refund, underage.email, underage.refund_reason) == (
        Status.DECLINED, True, Email.DECLINED, "underage")
    assert (missing.to_status, missing.from_statuses, missing.refund) == (
        Status.IN_REVIEW, (Status.PENDING,), False)
