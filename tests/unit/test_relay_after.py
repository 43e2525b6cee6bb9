"""The intake's relay thread: a request hands over its orders and returns at once; the thread
relays them in passes (what arrives during a pass goes in the next one, together); a failing
pass does not end it; the handoff is bounded; a forked child starts its own thread; close and
the exit flush leave nothing handed over unrelayed."""

from __future__ import annotations

import logging
import os
import threading

import pytest

from shared.handlers.relay_after import RelayAfterResponse


class Recorder:
    """A relay that records its passes; `gate` (when set) holds each pass until released."""

    def __init__(self, gate: threading.Event | None = None, fail_first: bool = False) -> None:
        self.passes: list[list[str]] = []
        self.gate = gate
        self.entered = threading.Event()
        self.fail_first = fail_first
        self.threads: set[str] = set()

    def __call__(self, order_ids: list[str]) -> None:
        self.threads.add(threading.current_thread().name)
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(10)
        self.passes.append(list(order_ids))
        if self.fail_first and len(self.passes) == 1:
            raise RuntimeError("the database went away")


def test_submit_returns_before_the_relay_runs_and_the_thread_relays_it():
    gate = threading.Event()
    relay = Recorder(gate)
    behind = RelayAfterResponse(relay)
    behind.submit(["o-1"])  # returns although the pass is held
    assert relay.entered.wait(5)
    assert relay.passes == [] and not behind.wait_idle(0.05)
    gate.set()
    assert behind.wait_idle(5)
    assert relay.passes == [["o-1"]]
    assert relay.threads == {"relay-after-response"}
    behind.close()


def test_orders_handed_over_during_a_pass_go_together_in_the_next_one_once_each():
    gate = threading.Event()
    relay = Recorder(gate)
    behind = RelayAfterResponse(relay)
    behind.submit(["o-1"])
    assert relay.entered.wait(5)
    for order_id in ("o-2", "o-3", "o-2", "o-4"):
        behind.submit([order_id])
    gate.set()
    assert behind.wait_idle(5)
    assert relay.passes == [["o-1"], ["o-2", "o-3", "o-4"]]
    behind.close()


def test_a_failing_pass_is_logged_and_the_thread_goes_on(caplog):
    relay = Recorder(fail_first=True)
    behind = RelayAfterResponse(relay)
    with caplog.at_level(logging.ERROR, logger="shared.handlers.relay_after"):
        behind.submit(["o-1"])
        assert behind.wait_idle(5)
    behind.submit(["o-2"])
    assert behind.wait_idle(5)
    assert relay.passes == [["o-1"], ["o-2"]]
    assert "deferred to the sweeper" in caplog.text and "database went away" not in caplog.messages[0]
    behind.close()


def test_the_handoff_is_bounded_and_says_so_once(caplog):
    gate = threading.Event()
    relay = Recorder(gate)
    behind = RelayAfterResponse(relay, max_waiting=3)
    behind.submit(["o-0"])
    assert relay.entered.wait(5)  # the thread holds o-0; the next ones wait
    with caplog.at_level(logging.WARNING, logger="shared.handlers.relay_after"):
        behind.submit(["o-1", "o-2", "o-3", "o-4"])
        behind.submit(["o-5"])
    assert [r.getMessage() for r in caplog.records] == [
        "relay thread behind by 3 orders; the sweeper relays the rest"]
    gate.set()
    assert behind.wait_idle(5)
    assert relay.passes == [["o-0"], ["o-1", "o-2", "o-3"]]  # o-4 and o-5 are the sweeper's
    behind.close()


def test_close_relays_what_waits_then_ends_the_thread_and_takes_no_more():
    relay = Recorder()
    behind = RelayAfterResponse(relay)
    behind.submit(["o-1"])
    behind.close()
    assert relay.passes == [["o-1"]]
    assert not behind._thread.is_alive()
    behind.submit(["o-2"])
    assert relay.passes == [["o-1"]]


def test_the_exit_flush_relays_on_the_callers_thread_when_the_relay_thread_is_gone():
    relay = Recorder()
    behind = RelayAfterResponse(relay)
    with behind._changed:  # as after a fork: orders handed over, no thread of this process
        behind._waiting.update(dict.fromkeys(["o-1", "o-2"]))
    behind.flush(timeout=0.05)
    assert relay.passes == [["o-1", "o-2"]]
    assert relay.threads == {threading.current_thread().name}


# Python 3.12 warns about any fork of a process with threads. Here the parent's relay thread
# is idle in its condition's wait (the lock released), so the child can take the lock; in
# gunicorn the master never starts the thread at all (it serves no request).
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded, use of fork:DeprecationWarning")
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_starts_its_own_thread():
    relay = Recorder()
    behind = RelayAfterResponse(relay)
    behind.submit(["parent"])
    assert behind.wait_idle(5)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: gunicorn's worker after the master imported the app
        try:
            behind.submit(["child"])
            ok = behind.wait_idle(5) and relay.passes[-1] == ["child"]
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1" and status == 0
    os.close(read)
    behind.close()
