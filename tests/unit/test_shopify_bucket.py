"""The connector's model of Shopify's cost bucket, on a clock the test moves."""

from __future__ import annotations

import threading

import pytest

from shared.stores.base import StoreUnavailable
from shared.stores.shopify import CostBucket


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def status(available: float, maximum: float = 100.0, rate: float = 10.0, requested: float = 10.0,
           actual: float | None = 10.0) -> dict:
    return {"requestedQueryCost": requested, "actualQueryCost": actual,
            "throttleStatus": {"maximumAvailable": maximum, "currentlyAvailable": available, "restoreRate": rate}}


def learned(clock: Clock, available: float = 100.0, **kw) -> CostBucket:
    bucket = CostBucket(clock=clock, sleep=clock.sleep)
    assert bucket.reserve(10) == 0.0  # the first request learns the bucket: nothing reserved
    bucket.settle(status(available, **kw), 0.0)
    return bucket


def test_the_first_answer_sets_the_bucket():
    bucket = learned(Clock(), 42.0, maximum=50.0, rate=5.0)
    assert (bucket.maximum, bucket.available, bucket.restore_rate, bucket.in_flight) == (50.0, 42.0, 5.0, 0.0)


def test_a_request_the_bucket_can_pay_goes_at_once_and_is_in_flight_until_answered():
    clock = Clock()
    bucket = learned(clock, 30.0)
    assert bucket.reserve(10) == 10 and clock.slept == []
    assert (bucket.available, bucket.in_flight) == (20.0, 10.0)
    bucket.settle(status(20.0), 10)
    assert (bucket.available, bucket.in_flight) == (20.0, 0.0)


def test_a_short_wait_is_waited_and_a_long_one_is_a_retry_after():
    clock = Clock()
    bucket = learned(clock, 5.0, rate=10.0)
    bucket.reserve(10)  # 5 short: half a second at 10 points/s
    assert clock.slept == [pytest.approx(0.52)]
    with pytest.raises(StoreUnavailable) as unavailable:
        bucket.reserve(30)  # 30 more after a refill to 0: three seconds
    assert unavailable.value.retry_after == pytest.approx(3.0, abs=0.1)
    assert bucket.in_flight == 10  # the refused reservation was given back


def test_a_query_gets_back_what_it_reserved_beyond_its_actual_cost():
    clock = Clock()
    bucket = learned(clock, 100.0)
    bucket.reserve(50)
    bucket.settle(status(94.0, requested=50.0, actual=6.0), 50)
    assert bucket.available == pytest.approx(94.0)


def test_a_throttled_answer_charges_nothing_and_shopify_s_lower_count_wins():
    clock = Clock()
    bucket = learned(clock, 100.0)
    bucket.reserve(10)
    bucket.settle(status(3.0, actual=None), 10)  # another client emptied the bucket
    assert bucket.available == 3.0


def test_refill_never_passes_the_maximum_less_what_is_in_flight():
    clock = Clock()
    bucket = learned(clock, 100.0)
    for _ in range(3):
        bucket.reserve(10)
    clock.now += 60  # a long wait with three requests on their way
    bucket.reserve(0)
    assert bucket.available + bucket.in_flight == pytest.approx(100.0)


def test_until_the_first_answer_requests_go_one_at_a_time():
    clock = Clock()
    bucket = CostBucket(clock=clock, sleep=clock.sleep)
    assert bucket.reserve(10) == 0.0
    went = threading.Event()

    def second() -> None:
        bucket.reserve(10)
        went.set()

    thread = threading.Thread(target=second)
    thread.start()
    assert not went.wait(0.2)  # held until the first answer tells the bucket's size
    bucket.settle(status(90.0), 0.0)
    assert went.wait(5)
    thread.join()
    assert bucket.available == 80.0


def test_an_unanswered_request_is_counted_as_charged_and_lets_the_next_learn():
    clock = Clock()
    bucket = CostBucket(clock=clock, sleep=clock.sleep)
    bucket.reserve(10)
    bucket.cancel(0.0)  # the first request timed out
    assert bucket.reserve(10) == 0.0  # the next one learns the bucket instead
