"""bench.intake's steady rate: the window where every client is warm and busy, the same on
both sides of the intake/pgbench ratio."""

import pytest

from bench.intake import WARM_UP, steady_rate


def test_the_window_opens_when_the_last_client_is_warm_and_closes_when_the_first_is_done():
    fast = [float(t) for t in range(1, 31)]  # one call a second, done at 30 s
    slow = [t + 0.5 for t in range(1, 26)]  # warm at 10.5 s, done at 25.5 s
    # (10.5 s, 25.5 s]: 15 calls each, in 15 s; the slow start and the lone end left out.
    assert steady_rate([fast, slow]) == pytest.approx(2.0)


def test_a_slow_first_call_and_an_uneven_end_do_not_count():
    warm = [0.1 * i for i in range(1, 101)]
    cold_start = [5.0, *(5.0 + 0.1 * i for i in range(1, 100))]  # first call 5 s, then as fast
    whole_run = 200 / max(cold_start)  # 13.4 calls a second, from 0 s to the last call
    rate = steady_rate([warm, cold_start])
    assert rate == pytest.approx(20.0, rel=0.05)  # two clients, ten calls a second each
    assert whole_run < 0.7 * rate


def test_the_order_of_completion_times_does_not_matter():
    times = [[float(t) for t in range(20)], [t + 0.25 for t in range(20)]]
    shuffled = [list(reversed(times[0])), times[1][10:] + times[1][:10]]
    assert steady_rate(shuffled) == steady_rate(times)


def test_too_few_calls_for_a_window_is_an_error_not_a_figure():
    with pytest.raises(ValueError):
        steady_rate([[float(t) for t in range(WARM_UP)], [float(t) for t in range(WARM_UP)]])
