"""Every kind has exactly one spec or handler, and its rules are read from there."""

from __future__ import annotations

from importlib import resources

import pytest

from shared.domain.messages import EmailJob
from shared.domain.model import EMAILS, OPEN, TERMINAL, Email, OrderActionKind, Status, TimerKind, email_spec
from shared.errors import InvalidField
from shared.handlers.registry import ORDER_ACTIONS
from shared.handlers.timers import FIRES

TEMPLATES = resources.files("shared.emails").joinpath("templates")


def test_every_email_kind_has_one_spec_and_its_templates():
    assert set(EMAILS) == set(Email)
    for spec in EMAILS.values():
        assert TEMPLATES.joinpath(f"{spec.template}.txt").is_file()
        assert TEMPLATES.joinpath(f"{spec.template}.html").is_file()
        assert spec.sendable_in and spec.sendable_in <= set(Status)


def test_the_spec_table_holds_each_kinds_rules():
    assert {k for k, s in EMAILS.items() if s.needs_link} == {Email.LINK, Email.REMINDER}
    assert {k: s.metric for k, s in EMAILS.items() if s.metric} == {Email.LINK: "links_sent",
                                                                     Email.REMINDER: "reminders_sent"}
    assert EMAILS[Email.LINK].sendable(Status.IN_REVIEW) and not EMAILS[Email.LINK].sendable(Status.VERIFIED)
    assert EMAILS[Email.EXPIRED].sendable("expired") and not EMAILS[Email.EXPIRED].sendable("declined")
    assert [k for k, s in EMAILS.items() if s.may_expire] == [Email.REMINDER]


def test_an_unknown_email_kind_is_refused():
    with pytest.raises(ValueError):
        email_spec("newsletter")
    with pytest.raises(InvalidField):
        EmailJob(order_id="o-1", kind="newsletter")


def test_every_timer_kind_and_order_action_has_one_handler():
    assert set(FIRES) == set(TimerKind)
    assert set(ORDER_ACTIONS) == set(OrderActionKind)


def test_statuses_are_open_or_terminal():
    assert set(OPEN) | TERMINAL == set(Status) and not set(OPEN) & TERMINAL
