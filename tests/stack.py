"""The local stack (`python -m devstack.run`, what scripts/run-local.sh runs) as a subprocess.

Shared by the end-to-end tests and the chaos suite (tests/chaos, bench/chaos.py):
a real SMTP inbox (aiosmtpd) counting what customers received, a run of free
ports, the stack process started and stopped (or SIGKILLed, every process of
it) with the same command and state folder, and a bounded poll.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import requests
from aiosmtpd.controller import Controller

from devstack.postgres import free_port
from devstack.processes import process_alive, process_tree
from devstack.run import FUNCTIONS, WOOCOMMERCE_STANDIN_OFFSET

ROOT = Path(__file__).resolve().parents[1]
FUNCTION_COUNT = len(FUNCTIONS)  # ports LOCAL_BASE_PORT onwards, one per function
STACK_PORTS = WOOCOMMERCE_STANDIN_OFFSET + 1  # ... and the outcome receiver and store stand-ins after them (devstack.run)
KIND_HEADER = "X-Verification-Email"
READY_LINE = "Local stack is up"  # what devstack.run prints once every function answered


class Inbox:
    """aiosmtpd handler: keeps every message; counts by recipient and kind."""

    def __init__(self) -> None:
        self.messages = []
        self.accepted_at = []  # wall-clock time each message was accepted, beside `messages`
        self._lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._lock:
            self.messages.append((tuple(envelope.rcpt_tos), message))
            self.accepted_at.append(time.time())
        return "250 OK"

    def arrivals(self) -> list[tuple[tuple[str, ...], str, float]]:
        """(recipients, kind, accepted at) of every message, in arrival order (for latency benches)."""
        with self._lock:
            return [(rcpts, m[KIND_HEADER], at) for (rcpts, m), at in zip(self.messages, self.accepted_at)]

    def kinds_for(self, order_id):
        return [m[KIND_HEADER] for _, m in self._snapshot() if order_id in m.get_body(("plain",)).get_content()]

    def texts_for(self, order_id) -> list[str]:
        """The plain-text bodies of the messages about `order_id`, in arrival order."""
        texts = [m.get_body(("plain",)).get_content() for _, m in self._snapshot()]
        return [text for text in texts if order_id in text]

    def by_recipient_and_kind(self, *, distinct: bool = False) -> Counter:
        """(recipient, kind) -> how many messages (`distinct`: how many Message-IDs among them)."""
        if distinct:
            ids = {(rcpt.lower(), m[KIND_HEADER], m["Message-ID"]) for rcpts, m in self._snapshot() for rcpt in rcpts}
            return Counter((rcpt, kind) for rcpt, kind, _ in ids)
        return Counter((rcpt.lower(), m[KIND_HEADER]) for rcpts, m in self._snapshot() for rcpt in rcpts)

    def _snapshot(self):
        with self._lock:
            return list(self.messages)


@contextlib.contextmanager
def smtp_inbox():
    """A real SMTP server on 127.0.0.1: yields (inbox, port)."""
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield inbox, controller.port
    finally:
        controller.stop()


def _below_ephemeral_ports() -> int:
    """The lowest port the kernel hands out to outgoing connections (Linux: 32768 by default)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def consecutive_free_ports(count: int = STACK_PORTS) -> int:
    """A run of `count` free ports below the ephemeral range: a stack killed and restarted on
    the same ports (the chaos suite) must find them free again, and an outgoing connection made
    meanwhile (to PostgreSQL, the SMTP server, a store stand-in) may take any ephemeral port."""
    low = 20000
    high = max(low + 1000, _below_ephemeral_ports()) - count
    for _ in range(50):
        base = random.randrange(low, high)
        sockets = []
        try:
            for offset in range(count):
                sock = socket.socket()
                sock.bind(("127.0.0.1", base + offset))
                sockets.append(sock)
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError("no run of free ports")


def wait_for(check, what, timeout: float = 45, every: float = 0.25):
    """Poll `check` until it returns something truthy (returned) or `timeout` passes (AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


class StackProcess:
    """`python -m devstack.run` with a given environment; output appended to one log file per start.

    `start()` may be called again after `stop()` or `kill()`: same command, same
    environment, same state folder and ports (timers keep the URL they were made with).
    """

    def __init__(self, env: dict[str, str], state_dir: str | Path, base_port: int) -> None:
        self.env = env
        self.state_dir = Path(state_dir)
        self.base_port = base_port
        self.url = f"http://127.0.0.1:{base_port}"
        self.process: subprocess.Popen | None = None
        self.log_paths: list[Path] = []

    def start(self, timeout: float = 90) -> StackProcess:
        log_path = self.state_dir / f"stack-{len(self.log_paths)}-{uuid.uuid4().hex[:6]}.log"
        self.log_paths.append(log_path)
        with log_path.open("wb") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "devstack.run"], cwd=ROOT, env=self.env,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            try:
                # devstack.run's own start-up probe must have passed too (it prints the banner then):
                # traffic before that can starve its probe, and it stops the whole stack.
                if (requests.get(self.url + "/healthz", timeout=2).status_code == 200 and self._all_listening()
                        and READY_LINE in log_path.read_text(errors="replace")):
                    return self
            except requests.RequestException:  # not up yet, or still booting on a busy machine
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"local stack did not start:\n{log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.3)

    def _all_listening(self) -> bool:
        for offset in range(FUNCTION_COUNT):
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.base_port + offset)) != 0:
                    return False
        return True

    def stop(self) -> None:
        """Ctrl-C, as a person stops it; SIGKILL whatever is left after 20 s."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            pass
        self.kill()

    def kill(self) -> int:
        """SIGKILL every process of the stack: devstack.run and each function's process group
        (found by process tree, since each function runs in a session of its own). Returns how many."""
        if self.process is None:
            return 0
        pids = process_tree(self.process.pid)
        groups = set()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                groups.add(os.getpgid(pid))
        groups.discard(os.getpgid(0))
        for group in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait()
        self.process = None
        # Gone means gone: no process of the old stack may still hold a port when it starts again.
        wait_for(lambda: not any(process_alive(pid) for pid in pids), "the killed processes to exit", timeout=30, every=0.05)
        return len(pids)

    def log_text(self) -> str:
        return "".join(path.read_text(errors="replace") for path in self.log_paths if path.exists())
