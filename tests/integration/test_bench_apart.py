"""bench.intake --apart: the bench's PostgreSQL on one CPU, the bench's own threads and what it
starts (pgbench) on the others (`bench._common.run_apart`); and devstack.processes, which it
reads, as the stack's tests do."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from bench._common import database, run_apart, split_cpus
from devstack.processes import parent_of, process_alive, process_tree


def test_the_lowest_cpu_is_the_databases_and_the_rest_are_the_clients():
    assert split_cpus({3, 1, 2}) == ({1}, {2, 3})
    with pytest.raises(SystemExit, match="two CPUs"):
        split_cpus({0})


def test_a_process_tree_is_read_from_proc():
    parent = subprocess.Popen(["sh", "-c", "sleep 60 & sleep 60 & wait"], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while len(process_tree(parent.pid)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        root, *found = process_tree(parent.pid)
        assert root == parent.pid and len(found) == 2
        assert all(Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep") for pid in found)
        assert all(parent_of(pid) == parent.pid for pid in found)
        assert process_tree(found[0]) == [found[0]]
        assert all(process_alive(pid) for pid in [parent.pid, *found])
    finally:
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()
    assert not process_alive(parent.pid)  # reaped: no /proc entry
    deadline = time.monotonic() + 10  # the sleeps: gone, or zombies until their new parent reaps them
    while any(process_alive(pid) for pid in found) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(process_alive(pid) for pid in found)
    zombie = subprocess.Popen(["true"])  # exited, not yet reaped: a zombie of this process
    try:
        while Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            time.sleep(0.01)
        assert not process_alive(zombie.pid)
    finally:
        zombie.wait()


def _backend_pid(conn) -> int:
    return conn.execute(text("SELECT pg_backend_pid()")).scalar_one()


def test_apart_puts_the_server_and_this_process_on_separate_cpus():
    cpus = os.sched_getaffinity(0)
    assert len(cpus) >= 2, "this test needs two CPUs (CI's machine has two)"
    try:
        with database() as (db, settings):
            with db.read() as conn:
                earlier = _backend_pid(conn)  # a backend the server had started before
            database_cpus, client_cpus = run_apart(db)
            assert database_cpus | client_cpus == cpus and not database_cpus & client_cpus

            assert os.sched_getaffinity(earlier) == database_cpus
            engine = create_engine(settings.database.url, poolclass=NullPool)
            try:
                with engine.connect() as conn:  # a backend started afterwards: born on the database's CPU
                    assert os.sched_getaffinity(_backend_pid(conn)) == database_cpus
            finally:
                engine.dispose()

            seen: list[set[int]] = []
            thread = threading.Thread(target=lambda: seen.append(os.sched_getaffinity(0)))
            thread.start()
            thread.join()
            assert seen == [client_cpus] and os.sched_getaffinity(0) == client_cpus
            started = subprocess.run([sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"],
                                     capture_output=True, text=True, check=True)  # as pgbench is started
            assert started.stdout.strip() == str(sorted(client_cpus))
    finally:
        for task in Path("/proc/self/task").iterdir():
            os.sched_setaffinity(int(task.name), cpus)
