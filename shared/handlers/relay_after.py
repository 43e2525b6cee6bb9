"""The intake's relay, after the response: one thread per process delivers what the
requests committed, many orders per pass.

A webhook is answered as soon as its transaction commits; its order id is handed to
this instance's relay thread, which claims the rows of every order waiting (one claim,
one task insert or a few Cloud Tasks calls, one publish batch, one outcome update per
pass) instead of each request doing those round trips before it answers. Nothing is
lost when the thread is slow, full or killed: the rows are committed, and the sweeper
relays whatever is left (every minute). The handoff is bounded (`MAX_WAITING` orders);
past it an order waits for the sweeper and the overflow is logged once per episode.

In the cloud the intake runs with its CPU always allocated (`deploy.sh`: instance-based
billing), so this thread runs at full speed after the response; with request-based
billing it would only run while another request is being served, so there the intake is
deployed with INTAKE_RELAY=in_request and relays before it answers instead.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Callable, Iterable

log = logging.getLogger(__name__)

MAX_WAITING = 10_000  # orders handed over and not yet relayed; past it the sweeper relays them
PASS = 200  # orders relayed together (about five outbox rows each: one claim of ROWS_PER_BATCH)
FLUSH_AT_EXIT_SECONDS = 5.0  # what a stopping instance spends relaying what is still waiting


class RelayAfterResponse:
    """`submit(order_ids)` returns at once; `relay(order_ids)` runs on this object's thread."""

    # Outbox rows leased per claim by a pass: a pass's orders' rows (about five each) in one
    # claim, one task insert, one publish and one outcome update. With the relay's usual 100,
    # the thread's many round trips (each waiting for the GIL behind the request threads)
    # left it seconds behind at 400 webhooks/s (`python -m bench.http`).
    ROWS_PER_BATCH = 1000
    # Nobody waits on a pass, so it may take longer than a request's relay (2 s): a pass of
    # 200 orders is about 400 Cloud Tasks calls on the relay's 8 call threads. Well inside
    # the rows' 30 s lease. What a pass cannot deliver in time is the sweeper's.
    BUDGET_SECONDS = 10.0

    def __init__(self, relay: Callable[[list[str]], object], *, max_waiting: int = MAX_WAITING) -> None:
        self._relay = relay
        self._max_waiting = max_waiting
        self._waiting: dict[str, None] = {}  # insertion-ordered set: oldest order first
        self._busy = False
        self._overflowing = False
        self._closed = False
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def submit(self, order_ids: Iterable[str]) -> None:
        with self._changed:
            if self._closed:
                return  # the instance is stopping: the sweeper relays these
            for order_id in order_ids:
                if len(self._waiting) >= self._max_waiting:
                    if not self._overflowing:
                        log.warning("relay thread behind by %d orders; the sweeper relays the rest",
                                    len(self._waiting))
                    self._overflowing = True
                    break
                self._waiting[order_id] = None
            self._start()
            self._changed.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """True once everything handed over has been relayed (tests; shutdown)."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._waiting and not self._busy, timeout)

    def flush(self, timeout: float = FLUSH_AT_EXIT_SECONDS) -> None:
        """Relay what is still waiting, on the caller's thread if the relay thread is gone."""
        if not self.wait_idle(timeout) and not self._alive():
            while batch := self._take():
                self._relay_once(batch)

    def close(self, timeout: float = FLUSH_AT_EXIT_SECONDS) -> None:
        """Relay what is waiting, then end the thread (the container is being dropped)."""
        self.flush(timeout)
        atexit.unregister(self.flush)
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        if self._alive():
            self._thread.join(timeout)

    def _start(self) -> None:
        # Under the condition's lock. A process forked from one that had the thread (gunicorn
        # forks its workers) starts its own: threads do not survive a fork.
        if self._alive():
            return
        first = self._thread is None
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name="relay-after-response", daemon=True)
        self._thread.start()
        if first:
            atexit.register(self.flush)

    def _alive(self) -> bool:
        return self._thread is not None and self._pid == os.getpid() and self._thread.is_alive()

    def _take(self) -> list[str]:
        with self._changed:
            batch = list(self._waiting)[:PASS]
            for order_id in batch:
                del self._waiting[order_id]
            self._busy = bool(batch)
            if len(self._waiting) < self._max_waiting // 2:
                self._overflowing = False
            return batch

    def _relay_once(self, batch: list[str]) -> None:
        try:
            self._relay(batch)
        except Exception:  # noqa: BLE001 - the thread must outlive any pass; the sweeper has the rows
            log.exception("relay pass failed; deferred to the sweeper")
        finally:
            with self._changed:
                self._busy = False
                self._changed.notify_all()

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: bool(self._waiting) or self._closed)
                if self._closed and not self._waiting:
                    return
            self._relay_once(self._take())
