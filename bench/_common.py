"""Shared bench plumbing: a PostgreSQL started for the run, and round-trip counters."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pg8000.core
from sqlalchemy import event, text

from devstack.postgres import Postgres, free_port
from devstack.processes import parent_of, process_tree
from shared.config import Settings
from shared.db.database import Database
from shared.db.engine import make_engine
from shared.db.migrate import ensure_schema

os.environ.setdefault("NO_GCE_CHECK", "true")
ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def database(**env: str) -> Iterator[tuple[Database, Settings]]:
    """A fresh PostgreSQL on 127.0.0.1 with the schema, stopped afterwards."""
    data_dir = Path(tempfile.mkdtemp(prefix="verification-bench-"))
    server = Postgres(data_dir, free_port()).start()
    try:
        settings = Settings.from_env({
            "DATABASE_URL": server.url, "TASKS_BACKEND": "local", "TIMER_URL": "http://127.0.0.1:9/",
            "EVENTS_BACKEND": "local", "DB_POOL_SIZE": "10", "DB_MAX_OVERFLOW": "10",
            "ORDER_WEBHOOK_SECRET": "whsec_" + "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
            "CUSTOMER_KEY_SECRET": "bench-customer-key-pepper", **env,
        })
        db = Database(make_engine(settings.database))
        ensure_schema(db)
        yield db, settings
        db.engine.dispose()
    finally:
        server.stop("immediate")
        shutil.rmtree(data_dir, ignore_errors=True)


def round_options(*, n: int, rounds: int, concurrency: int = 8, apart: bool = False) -> argparse.Namespace:
    """The intake benches' options: N webhooks per round, C concurrent clients, alternating rounds
    (and, where the bench takes it, `--apart`: `run_apart`)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=n)
    parser.add_argument("--concurrency", type=int, default=concurrency)
    parser.add_argument("--rounds", type=int, default=rounds, help="alternating rounds; medians are printed")
    if apart:
        parser.add_argument("--apart", action="store_true",
                            help="PostgreSQL on one CPU, the clients on the others (not the stock measure)")
    return parser.parse_args()


def split_cpus(cpus) -> tuple[set[int], set[int]]:
    """(the database's CPU, the clients' CPUs) out of `cpus`: the lowest one, and the rest."""
    ordered = sorted(cpus)
    if len(ordered) < 2:
        raise SystemExit("--apart needs two CPUs or more: the database on one, its clients on the rest")
    return {ordered[0]}, set(ordered[1:])


def run_apart(db: Database) -> tuple[set[int], set[int]]:
    """Put the bench's PostgreSQL on one CPU and this process (its threads, and what it starts:
    pgbench) on the others, and return (the database's CPUs, the clients'): the database's CPU
    apart from its clients', as Cloud SQL's is apart from the functions'. Not the stock measure,
    where the two share this machine's cores and every µs of the clients' CPU is taken from the
    database's.

    The postmaster first, so that every process it starts afterwards (a backend, an autovacuum
    worker) is born on its CPU; then the processes it had already started (the pool's backends,
    its own workers)."""
    database_cpus, client_cpus = split_cpus(os.sched_getaffinity(0))
    postmaster = parent_of(db.atomic(text("SELECT pg_backend_pid()"))[0][0])
    try:
        os.sched_setaffinity(postmaster, database_cpus)
    except PermissionError:
        raise SystemExit("--apart needs the right to set the database server's CPUs (root, or the "
                         "server's own user)") from None
    for pid in process_tree(postmaster)[1:]:
        with contextlib.suppress(ProcessLookupError):  # a worker that has just exited
            os.sched_setaffinity(pid, database_cpus)
    for thread in Path("/proc/self/task").iterdir():  # threads started later take their starter's
        os.sched_setaffinity(int(thread.name), client_cpus)
    return database_cpus, client_cpus


class RoundTrips:
    """Counts database round trips two ways.

    `sqlalchemy`: what SQLAlchemy's events see — statements executed, BEGIN
    (pg8000 sends it before the first statement of a transaction), COMMIT and
    ROLLBACK (a prepared statement run on the driver, `Database.run_prepared`,
    is not seen here).
    `wire`: pg8000's socket flushes, each followed by a wait for the server's
    answer; pg8000's extended protocol spends 3 of them on one parameterised
    statement (parse, describe, bind+execute), 1 on a prepared one.
    """

    def __init__(self, engine) -> None:
        self.sqlalchemy = 0
        self.wire = 0
        self._lock = threading.Lock()
        self._engine = engine
        self._original_flush = pg8000.core._flush

    def _bump(self, *_, **__) -> None:
        with self._lock:
            self.sqlalchemy += 1

    def __enter__(self) -> RoundTrips:
        event.listen(self._engine, "before_cursor_execute", self._bump)
        event.listen(self._engine, "commit", self._bump)
        event.listen(self._engine, "rollback", self._end)
        event.listen(self._engine, "begin", self._begin)

        def counting_flush(sock):
            with self._lock:
                self.wire += 1
            return self._original_flush(sock)

        pg8000.core._flush = counting_flush
        return self

    def _begin(self, conn) -> None:
        # pg8000 sends BEGIN only on a connection that is not in autocommit mode
        # (read without I/O: get_isolation_level() would itself query the server).
        if not conn.connection.dbapi_connection.autocommit:
            self._bump()

    def _end(self, conn) -> None:
        # SQLAlchemy "rolls back" every connection it returns; pg8000 sends
        # nothing unless a transaction is open.
        if conn.connection.dbapi_connection._in_transaction:
            self._bump()

    def __exit__(self, *exc) -> None:
        event.remove(self._engine, "before_cursor_execute", self._bump)
        event.remove(self._engine, "commit", self._bump)
        event.remove(self._engine, "rollback", self._end)
        event.remove(self._engine, "begin", self._begin)
        pg8000.core._flush = self._original_flush


SECRET = "whsec_" + "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
_NOWHERE = "http://127.0.0.1:9/"


def function_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a `webhook_intake` process on the bench's database, local backends
    (their deliveries are rows nobody dispatches during the bench)."""
    subscribers = ",".join(f"{t}={_NOWHERE}" for t in ("verification-events", "customer-emails", "order-actions"))
    return {**os.environ, "NO_GCE_CHECK": "true", "DATABASE_URL": settings.database.url,
            "TASKS_BACKEND": "local", "EVENTS_BACKEND": "local", "TIMER_URL": _NOWHERE,
            "LOCAL_SUBSCRIBER_URLS": subscribers, "ORDER_WEBHOOK_SECRET": SECRET,
            "VERIFF_SHARED_SECRET": "bench-veriff-secret", "CUSTOMER_KEY_SECRET": "bench-customer-key-pepper",
            "LOG_LEVEL": "WARNING", **extra}


def spawn_function(target: str, port: int, env: dict[str, str], source: str = "main.py") -> subprocess.Popen:
    """`functions-framework --target=TARGET` on 127.0.0.1:PORT, as Cloud Functions runs it
    (which also sets FUNCTION_TARGET)."""
    executable = Path(sys.executable).parent / "functions-framework"
    return subprocess.Popen(
        [str(executable), f"--target={target}", f"--source={source}", "--host=127.0.0.1", f"--port={port}"],
        cwd=ROOT, env={**env, "FUNCTION_TARGET": target}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    """Stop a spawned function and its workers (its own process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def rss_mb(pid: int) -> list[float]:
    """Resident memory of a process, then of each of its children (gunicorn's master, then
    its worker), in MB. Pages the worker shares with the master since the fork count in both."""
    pids = [pid] + [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    sizes = []
    for one in pids:
        for line in Path(f"/proc/{one}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                sizes.append(int(line.split()[1]) / 1024)
    return sizes
