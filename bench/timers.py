"""Timer benchmarks.

    .venv/bin/python -m bench.timers [--timers 1000] [--spread 10] [--poll-interval 0.2]

(a) `timer_lateness`: how late the local stack delivers timers. N timers go
    through LocalTaskScheduler into a PostgreSQL this script starts itself,
    a TaskDispatcher delivers them to an HTTP server on 127.0.0.1, and
    lateness = time received - schedule_time. Target: p99 <= 1 s.

Task creation, the dispatcher and the HTTP server share this one Python
process, and PostgreSQL runs beside it on the same machine (2 cores here):
the figures include all of them competing for the same CPUs.
"""

from __future__ import annotations

import argparse
import math
import random
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bench import overdue
from bench._common import database
from devstack.task_dispatcher import TaskDispatcher
from shared.ports import TimerTask
from shared.adapters.tasks import LocalTaskScheduler
from shared.db.database import Database

LATENESS_TARGET_P99 = timedelta(seconds=1)


class _Receiver:
    """Records when each task name first arrives; answers 200."""

    def __init__(self) -> None:
        self.received: dict[str, datetime] = {}
        self.duplicates = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                now = datetime.now(timezone.utc)
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                name = self.headers.get("X-CloudTasks-TaskName", "")
                with receiver._lock:
                    if name in receiver.received:
                        receiver.duplicates += 1
                    else:
                        receiver.received[name] = now
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/timer"

    def count(self) -> int:
        with self._lock:
            return len(self.received)

    def __enter__(self) -> _Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass(frozen=True)
class LatenessReport:
    timers: int
    delivered: int
    duplicates: int
    created_late: int  # schedule_time already past when the row was written
    create_seconds: float
    p50: timedelta
    p90: timedelta
    p99: timedelta
    max: timedelta
    poll_interval: float

    def lines(self) -> list[str]:
        ms = lambda d: f"{d.total_seconds() * 1000:8.1f} ms"  # noqa: E731
        return [
            f"timers {self.timers}, delivered {self.delivered}, duplicates {self.duplicates}, "
            f"created after their time {self.created_late}",
            f"created in {self.create_seconds:.2f} s ({self.timers / self.create_seconds:.0f}/s); "
            f"dispatcher poll interval {self.poll_interval * 1000:.0f} ms",
            f"lateness p50 {ms(self.p50)}",
            f"lateness p90 {ms(self.p90)}",
            f"lateness p99 {ms(self.p99)}   (target {ms(LATENESS_TARGET_P99).strip()}: "
            f"p99/target = {self.p99 / LATENESS_TARGET_P99:.2f})",
            f"lateness max {ms(self.max)}",
        ]


def _percentile(sorted_values: list[timedelta], fraction: float) -> timedelta:
    """Nearest-rank percentile."""
    rank = max(math.ceil(fraction * len(sorted_values)), 1)
    return sorted_values[rank - 1]


def timer_lateness(
    db: Database,
    *,
    timers: int = 1000,
    lead: float = 5.0,
    spread: float = 10.0,
    poll_interval: float = 0.2,
    workers: int = 8,
    batch_size: int = 32,
    seed: int = 1,
) -> LatenessReport:
    """Part (a): schedule `timers` timers spread over `spread` s, starting `lead` s from now,
    deliver them with one TaskDispatcher, and measure received - schedule_time."""
    rng = random.Random(seed)
    with _Receiver() as receiver:
        scheduler = LocalTaskScheduler(db, receiver.url)
        start = datetime.now(timezone.utc) + timedelta(seconds=lead)
        tasks = sorted(
            (TimerTask(name=f"{uuid.uuid4().hex}-bench-0-v1",
                       schedule_time=start + timedelta(seconds=rng.uniform(0, spread)),
                       payload={"order_id": f"bench-{i}", "kind": "deadline",
                                "reminder_index": 0, "deadline_version": 1})
             for i in range(timers)),
            key=lambda t: t.schedule_time,
        )
        stop = threading.Event()
        dispatcher = TaskDispatcher(db, poll_interval=poll_interval, workers=workers,
                                    batch_size=batch_size)
        thread = threading.Thread(target=dispatcher.run_forever, args=(stop,), daemon=True)
        thread.start()
        try:
            created_late = 0
            began = time.monotonic()
            for task in tasks:
                scheduler.create(task)
                if datetime.now(timezone.utc) > task.schedule_time:
                    created_late += 1
            create_seconds = time.monotonic() - began
            deadline = time.monotonic() + lead + spread + 60
            while receiver.count() < timers and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            stop.set()
            thread.join(timeout=30)
            dispatcher.close()
        received = dict(receiver.received)
        duplicates = receiver.duplicates
    lateness = sorted(received[t.name] - t.schedule_time for t in tasks if t.name in received)
    if not lateness:
        raise RuntimeError("no timer was delivered")
    return LatenessReport(
        timers=timers, delivered=len(lateness), duplicates=duplicates, created_late=created_late,
        create_seconds=create_seconds, p50=_percentile(lateness, 0.50),
        p90=_percentile(lateness, 0.90), p99=_percentile(lateness, 0.99), max=lateness[-1],
        poll_interval=poll_interval,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timers", type=int, default=1000)
    parser.add_argument("--spread", type=float, default=10.0, help="seconds the timers are spread over")
    parser.add_argument("--lead", type=float, default=5.0, help="seconds before the first timer")
    parser.add_argument("--poll-interval", type=float, default=0.2)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--sessions", type=int, default=1_000_000, help="(b): sessions in the table")
    args = parser.parse_args(argv)

    with database() as (db, _settings):
        print("(a) local timer lateness: LocalTaskScheduler + TaskDispatcher -> HTTP on 127.0.0.1")
        report = timer_lateness(db, timers=args.timers, lead=args.lead, spread=args.spread,
                                poll_interval=args.poll_interval, workers=args.workers)
        for line in report.lines():
            print("   ", line)
    with database() as (db, _settings):
        print(f"(b) the sweeper's overdue-session query on {args.sessions:,} sessions (2% pending)")
        overdue.fill(db, args.sessions, pending_percent=2.0)
        cost = overdue.overdue_query_cost(db)
        print(f"    plan uses {overdue.INDEX}: {cost['uses_partial_index']}; server {cost['execution']}")
        print(f"    sweeper call incl. round trip: p50 {cost['p50_ms']:.2f} ms, p99 {cost['p99_ms']:.2f} ms "
              f"({cost['found']} rows; target <= 5 ms)")
    ok = report.delivered == report.timers and report.duplicates == 0 and cost["uses_partial_index"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
