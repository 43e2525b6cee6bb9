"""Internal messages are checked, not trusted (issue 10 item 7, issue 8 item 3)."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared.domain.ids import new_id
from shared.domain.messages import EmailJob, EventMessage, OrderAction, TimerPayload
from shared.domain.model import OrderActionKind, TimerKind
from shared.errors import InvalidField

TIMER = {"v": 1, "order_id": "A-1", "kind": "deadline", "reminder_index": 0, "deadline_version": 1}
ACTION = {"v": 1, "order_id": "A-1", "action": "refund", "reason": "expired"}
EVENT = {"v": 1, "id": "e-1", "type": "verification.approved", "order_id": "A-1",
         "occurred_at": "2026-11-29T10:00:00+00:00", "data": {"seconds_to_verify": 60}}


def test_valid_payloads_round_trip():
    timer = TimerPayload.from_dict(TIMER)
    assert timer.timer_kind is TimerKind.DEADLINE and TimerPayload.from_dict(timer.to_dict()) == timer
    assert OrderAction.from_dict(ACTION).kind is OrderActionKind.REFUND
    assert EventMessage.from_dict(EVENT).data == {"seconds_to_verify": 60}
    assert EmailJob.from_dict({"v": 1, "order_id": "A-1", "kind": "link"}).reminder_index == 0


@pytest.mark.parametrize("change, field", [
    ({"kind": "expire"}, "kind"), ({"kind": "Deadline"}, "kind"), ({"kind": 1}, "kind"),
    ({"order_id": "A-1\n"}, "order_id"), ({"order_id": "A\x00"}, "order_id"), ({"order_id": "\ud800"}, "order_id"),
    ({"order_id": 5}, "order_id"), ({"reminder_index": "0"}, "reminder_index"),
    ({"reminder_index": True}, "reminder_index"), ({"deadline_version": 2**40}, "deadline_version"),
    ({"deadline_version": 0}, "deadline_version"),
])
def test_bad_timer_payloads_are_permanent_errors(change, field):
    with pytest.raises(InvalidField) as error:
        TimerPayload.from_dict({**TIMER, **change})
    assert error.value.field == field


@pytest.mark.parametrize("change, field", [
    ({"action": "refund_everything"}, "action"), ({"action": None}, "action"),
    ({"reason": "x\ud800"}, "reason"), ({"order_id": ["A-1"]}, "order_id"),
])
def test_bad_order_actions_are_permanent_errors(change, field):
    with pytest.raises(InvalidField) as error:
        OrderAction.from_dict({**ACTION, **change})
    assert error.value.field == field


@pytest.mark.parametrize("change, field", [
    ({"occurred_at": "0001-01-01T00:00:00+14:00"}, "occurred_at"), ({"occurred_at": "soon"}, "occurred_at"),
    ({"data": []}, "data"), ({"data": {"seconds_to_verify": 10**12}}, "data.seconds_to_verify"),
    ({"data": {"kind": "link\x00"}}, "data.kind"), ({"order_id": "A\n"}, "order_id"),
])
def test_bad_event_messages_are_permanent_errors(change, field):
    with pytest.raises(InvalidField) as error:
        EventMessage.from_dict({**EVENT, **change})
    assert error.value.field == field


def test_unknown_email_kind_is_a_permanent_error():
    with pytest.raises(InvalidField) as error:
        EmailJob.from_dict({"v": 1, "order_id": "A-1", "kind": "coupon"})
    assert error.value.field == "kind"


@pytest.mark.parametrize("make", [
    lambda m: TimerPayload.from_dict({**TIMER, "v": m}),
    lambda m: TimerPayload.from_dict({**TIMER, "order_id": m + "\n"}),
    lambda m: TimerPayload.from_dict({**TIMER, "kind": m}),
    lambda m: OrderAction.from_dict({**ACTION, "action": m}),
    lambda m: EventMessage.from_dict({**EVENT, "occurred_at": m}),
])
def test_errors_never_echo_the_input(make):
    marker = "someone@buyer.example"
    with pytest.raises(InvalidField) as error:
        make(marker)
    assert marker not in str(error.value)


def test_new_ids_are_version_7_uuids_in_their_canonical_text_ordered_by_their_millisecond():
    before = time.time_ns() // 1_000_000
    ids = [new_id() for _ in range(2000)]
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == len(ids)
    stamps = []
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 7 and parsed.variant == uuid.RFC_4122
        stamps.append(parsed.int >> 80)
    assert stamps == sorted(stamps) and before <= stamps[0] and stamps[-1] <= after
    assert {text[19] for text in ids} == set("89ab")  # the variant's two bits, then random ones
    rand_a = {text[15:18] for text in ids}
    assert len(rand_a) > 1500  # 12 random bits after the version: not a counter, not constant


def test_new_ids_on_many_threads_never_repeat():
    with ThreadPoolExecutor(8) as pool:
        batches = list(pool.map(lambda _: [new_id() for _ in range(1000)], range(8)))
    ids = [one for batch in batches for one in batch]
    assert len(set(ids)) == len(ids) == 8000
    assert len({one[19:] for one in ids}) == 8000  # the random tails alone are distinct too


def test_to_dict_is_every_field_in_order_after_the_version():
    job = EmailJob(order_id="o-1", kind="link", reminder_index=2)
    assert list(job.to_dict().items()) == [("v", 1), ("order_id", "o-1"), ("kind", "link"), ("reminder_index", 2)]
