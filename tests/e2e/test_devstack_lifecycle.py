"""The run command (`python -m devstack.run`) as a newcomer meets it: it refuses a second copy,
fails fast with one line when a function cannot start, and leaves no PostgreSQL or function
process behind on any way out -- Ctrl-C, SIGTERM, a failed start, a function dying, or an
earlier run killed with -9.

These stacks start their own PostgreSQL in their state folder (no DATABASE_URL), as
scripts/run-local.sh does.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import LIGHTSPEED_SECRET, ORDER_SECRET, VERIFF_API_KEY, VERIFF_SECRET
from tests.stack import ROOT, StackProcess, consecutive_free_ports, process_tree, wait_for

QUICK = 20  # seconds a refusal or a failed start may take at most (PostgreSQL's start included)


@pytest.fixture
def state_dir():
    path = Path(tempfile.mkdtemp(prefix="verification-devstack-"))
    path.chmod(0o755)  # PostgreSQL runs as `postgres` when the tests run as root
    yield path
    for pid in postgres_pids(path):  # a failing test must not leave its server behind either
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGQUIT)
    shutil.rmtree(path, ignore_errors=True)


def stack_env(state_dir: Path, base: int, **overrides: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if key not in ("DATABASE_URL", "TASKS_BACKEND", "TIMER_URL", "EVENTS_BACKEND")}
    env.update({
        "LOCAL_BASE_PORT": str(base), "LOCAL_STATE_DIR": str(state_dir), "PYTHONPATH": str(ROOT),
        "NO_GCE_CHECK": "true", "ORDER_WEBHOOK_SECRET": ORDER_SECRET, "VERIFF_SHARED_SECRET": VERIFF_SECRET,
        "VERIFF_API_KEY": VERIFF_API_KEY, "LIGHTSPEED_CLIENT_SECRET": LIGHTSPEED_SECRET,
        "CUSTOMER_KEY_SECRET": "e2e-customer-key-pepper",
        "EMAIL_BACKEND": "console", "REFUND_BACKEND": "manual", "LOCAL_SWEEP_SECONDS": "3600",
    })
    env.update(overrides)
    return env


def run_once(env: dict[str, str], timeout: float = QUICK * 3) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "devstack.run"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
    return done, time.monotonic() - started


def postgres_pids(state_dir: Path) -> list[int]:
    """The postmaster running on this state folder's data directory, if any."""
    data_dir = str(state_dir / "pgdata")
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if command and command[0].endswith(b"postgres") and data_dir.encode() in command:
            found.append(int(entry.name))
    return found


def alive(pids: list[int]) -> list[int]:
    living = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            living.append(pid)
    return living


def test_a_taken_port_stops_the_start_at_once_naming_it(state_dir):
    base = consecutive_free_ports()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", base + 2))
        holder.listen()
        done, seconds = run_once(stack_env(state_dir, base))
    assert done.returncode == 1
    assert seconds < QUICK
    assert done.stderr.strip().splitlines() == [
        f"devstack: port {base + 2} (sweep) is already in use by another program; "
        "free it or move the stack's ports with LOCAL_BASE_PORT; stopped"]
    assert "Traceback" not in done.stdout + done.stderr
    assert postgres_pids(state_dir) == []


def test_a_function_that_cannot_start_stops_the_stack_with_its_reason(state_dir):
    base = consecutive_free_ports()
    done, seconds = run_once(stack_env(state_dir, base, CONSOLE_SECRET=""))  # only the console needs it
    assert done.returncode == 1
    assert seconds < QUICK + 15  # PostgreSQL's first start (initdb) and the schema come first
    assert done.stderr.strip().splitlines()[-1] == (
        "devstack: operator_console could not start: ConfigError: CONSOLE_SECRET: is required by "
        "this function; stopped")
    assert "Traceback" not in done.stderr
    assert postgres_pids(state_dir) == []  # an error during start-up stops the PostgreSQL it started
    for offset in range(7):  # and every function that did start
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", base + offset)) != 0


def test_a_console_sign_in_token_too_short_stops_the_stack_naming_it(state_dir):
    base = consecutive_free_ports()
    done, _ = run_once(stack_env(state_dir, base, CONSOLE_DEV_TOKEN="guessable"))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (  # the stack reads its settings before starting anything
        "devstack: CONSOLE_DEV_TOKEN: is required with CONSOLE_AUTH=dev, at least 32 random characters "
        "(devstack.run makes one per run); stopped")
    assert "guessable" not in done.stdout + done.stderr and "Traceback" not in done.stderr
    assert postgres_pids(state_dir) == []


def test_a_second_copy_refuses_and_sigterm_stops_everything(state_dir):
    base = consecutive_free_ports()
    env = stack_env(state_dir, base)
    stack = StackProcess(env, state_dir, base).start(timeout=90)
    try:
        pids = process_tree(stack.process.pid)
        assert postgres_pids(state_dir), "the stack's own PostgreSQL"
        # gunicorn's control sockets are the stack's own, not ~/.gunicorn's
        assert sorted(p.parent.name for p in (state_dir / "run").glob("*/gunicorn.ctl")) == sorted(
            ["webhook_intake", "timer_expiry", "sweep", "send_customer_email", "record_analytics",
             "request_refund", "operator_console"])

        second, seconds = run_once(env)
        assert second.returncode == 1 and seconds < 5
        assert second.stderr.strip().splitlines() == [
            f"devstack: a local stack is already running from {state_dir} (pid {stack.process.pid}); "
            "stop it first (Ctrl-C in its terminal)"]

        os.kill(stack.process.pid, signal.SIGTERM)  # the run command alone, as `kill PID` does
        assert stack.process.wait(30) == 0
        wait_for(lambda: not postgres_pids(state_dir), "the stack's PostgreSQL to stop", timeout=10)
        wait_for(lambda: not alive(pids), "every function process to exit", timeout=10)
    finally:
        stack.kill()


def test_after_a_kill_9_the_next_start_leaves_no_orphan_and_a_dying_function_stops_it(state_dir):
    base = consecutive_free_ports()
    env = stack_env(state_dir, base)
    first = StackProcess(env, state_dir, base).start(timeout=90)
    orphans = [pid for pid in process_tree(first.process.pid) if pid != first.process.pid]
    orphaned_postgres = postgres_pids(state_dir)
    os.kill(first.process.pid, signal.SIGKILL)  # the run command only: its children live on
    first.process.wait()
    first.process = None
    assert alive(orphaned_postgres) and alive(orphans)

    second = StackProcess(env, state_dir, base).start(timeout=90)
    try:
        assert not alive(orphans), "the earlier run's functions are stopped"
        assert not alive(orphaned_postgres), "the earlier run's PostgreSQL is not reused"
        assert "left running by an earlier run" in second.log_text()
        now_running = postgres_pids(state_dir)
        assert now_running

        # A function that dies stops the whole stack, its PostgreSQL included.
        sweep = next(pid for pid in process_tree(second.process.pid) if b"sweep" in
                     Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"))
        os.killpg(os.getpgid(sweep), signal.SIGKILL)
        assert second.process.wait(30) == 1
        assert "devstack: sweep exited with status" in second.log_text()
        wait_for(lambda: not alive(now_running), "the stack's PostgreSQL to stop", timeout=10)
    finally:
        second.kill()
