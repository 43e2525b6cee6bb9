"""The chaos harness: the real local stack at its stock pool settings, faults, and what the world received.

`ChaosWorld` owns what outlives one scenario: a PostgreSQL of its own (so it
can be stopped `-m fast` / `-m immediate` and started again), a real SMTP
inbox and a local refund API. `ChaosRun` is one scenario: an empty database
on that server and `python -m devstack.run` started on it with secrets made
for the run, which it can SIGKILL (every process) and start again with the
same command and state folder. `Clients` are 16 concurrent HTTP clients.

Counts come from outside the stack (the inbox, the refund API, HTTP statuses)
and from the database; nothing here sleeps to assert: it polls with a bound.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import pg8000.native
import requests

from devstack.run import FUNCTIONS
from devstack.postgres import Postgres, free_port
from devstack.signing import order_body, standard_webhook_headers, veriff_body, veriff_headers
from tests.emulators.http_target import RecordingTarget
from tests.stack import ROOT, StackProcess, consecutive_free_ports, smtp_inbox, wait_for

CLIENTS = 16
CLIENT_TIMEOUT = 30.0  # seconds one HTTP request may take before the client gives up on it
CUSTOMER_DOMAIN = "buyer.example"
_LETTERS = "ghjkmnpqrstvwxyz"  # no hex digit: a customer's address cannot collide with a logged id
# The stack's own settings may not be touched: the suite runs at the stock pool size.
_NOT_PASSED = ("DB_POOL_SIZE", "DB_MAX_OVERFLOW", "TASKS_BACKEND", "TIMER_URL", "EVENTS_BACKEND",
               "LOCAL_SUBSCRIBER_URLS", "DATABASE_URL")
# The stack logs a pool timeout as "database unavailable" (the cause's class is not logged): with
# PostgreSQL up all along, that line can only mean a request waited out the pool.
POOL_TIMEOUT = re.compile(r"QueuePool limit|pool timeout|TimeoutError|database unavailable", re.IGNORECASE)


def customer_email(order_id: str) -> str:
    """A recipient of this order's own, with no hex run in it (so a leaked fragment is unambiguous)."""
    digest = hashlib.sha256(order_id.encode()).hexdigest()[:14]
    return "".join(_LETTERS[int(c, 16)] for c in digest) + "@" + CUSTOMER_DOMAIN


def new_prefix(scenario: str) -> str:
    return f"chaos-{scenario}-{uuid.uuid4().hex[:6]}"


# ---- the outside world -----------------------------------------------------


@dataclass(frozen=True)
class RefundCall:
    order_id: str | None
    idempotency_key: str | None
    authorized: bool


class RefundApi(RecordingTarget):
    """The store's refund API on 127.0.0.1: answers 200 to every call and records it."""

    def __init__(self, token: str) -> None:
        super().__init__(path="/refunds")
        self.token = token

    def calls(self, prefix: str) -> list[RefundCall]:
        found = []
        for delivery in self.deliveries():
            try:
                order_id = json.loads(delivery.body).get("orderId")
            except ValueError:
                order_id = None
            if (order_id or "").startswith(prefix):
                found.append(RefundCall(order_id, delivery.header("Idempotency-Key"),
                                        delivery.header("Authorization") == f"Bearer {self.token}"))
        return found


class ChaosWorld:
    """PostgreSQL, SMTP inbox and refund API for any number of scenarios; a context manager."""

    def __init__(self) -> None:
        self.work_dir = Path(tempfile.mkdtemp(prefix="verification-chaos-"))
        self.work_dir.chmod(0o711)  # PostgreSQL runs as its own user and must reach pgdata inside
        self.refund_token = "tok" + secrets.token_urlsafe(24)
        self._exit = contextlib.ExitStack()

    def __enter__(self) -> ChaosWorld:
        try:
            self.postgres = Postgres(self.work_dir / "pgdata", free_port()).start()
            self._exit.callback(self.postgres.stop, "immediate")
            self.inbox, self.smtp_port = self._exit.enter_context(smtp_inbox())
            self.refunds = RefundApi(self.refund_token).start()
            self._exit.callback(self.refunds.stop)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._exit.close()
        shutil.rmtree(self.work_dir, ignore_errors=True)

    def admin(self, database: str = "postgres"):
        return pg8000.native.Connection("postgres", host="127.0.0.1", port=self.postgres.port,
                                        database=database, timeout=30)

    def administer(self, statement: str) -> None:
        """One statement on the server's `postgres` database (starting the server if it is down)."""
        self.ensure_postgres()
        admin = self.admin()
        try:
            admin.run(statement)
        finally:
            admin.close()

    def ensure_postgres(self) -> None:
        """Start PostgreSQL again if a scenario stopped it (or a failed one left it stopped)."""
        if not self.postgres.is_running():
            self.postgres.start()

    def run(self, scenario: str, **settings: str) -> ChaosRun:
        return ChaosRun(self, scenario, settings)


# ---- one scenario ------------------------------------------------------------


class ChaosRun:
    """One scenario's database and stack. `with world.run("storm", VERIFICATION_WINDOW="10m") as run:`."""

    def __init__(self, world: ChaosWorld, scenario: str, settings: dict[str, str]) -> None:
        self.world = world
        self.prefix = new_prefix(scenario)
        self.database = "chaos_" + uuid.uuid4().hex[:10]
        self.secrets = {
            "ORDER_WEBHOOK_SECRET": "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
            "VERIFF_SHARED_SECRET": "".join(secrets.choice(_LETTERS) for _ in range(32)),
            "VERIFF_API_KEY": "".join(secrets.choice(_LETTERS) for _ in range(20)),
            "LIGHTSPEED_CLIENT_SECRET": "".join(secrets.choice(_LETTERS) for _ in range(32)),
            "CUSTOMER_KEY_SECRET": "".join(secrets.choice(_LETTERS) for _ in range(32)),
        }
        state_dir = world.work_dir / self.database
        state_dir.mkdir()
        base = consecutive_free_ports()
        env = {k: v for k, v in os.environ.items() if k not in _NOT_PASSED}
        env.update(self.secrets)
        env.update({
            "DATABASE_URL": f"postgresql+pg8000://postgres@127.0.0.1:{world.postgres.port}/{self.database}",
            "LOCAL_BASE_PORT": str(base), "LOCAL_STATE_DIR": str(state_dir), "PYTHONPATH": str(ROOT),
            "NO_GCE_CHECK": "true",
            "LOCAL_LOG": "json",  # every log line as written: the leak and pool-timeout checks read them all
            "EMAIL_BACKEND": "smtp", "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(world.smtp_port),
            "SMTP_STARTTLS": "false",
            "REFUND_BACKEND": "http", "REFUND_API_URL": world.refunds.url, "REFUND_API_TOKEN": world.refund_token,
            "VERIFICATION_WINDOW": "10m", "REMINDER_OFFSETS": "5m", "SWEEP_GRACE": "2s",
            "LOCAL_SWEEP_SECONDS": "2",
            # Scaled down with the windows: an email or refund call a SIGKILL interrupted is
            # taken over when its lease passes (5 minutes by default; local sends take ms).
            "EMAIL_LEASE": "15s",
        })
        env.update(settings)
        self.stack = StackProcess(env, state_dir, base)
        self.url = self.stack.url
        self.started = time.monotonic()
        # Wall-clock time each kill_everything was over (every process of the stack gone), beside
        # the SMTP server's arrival times: an attempt may reach the server while a kill is under way.
        self.killed_at: list[float] = []

    def __enter__(self) -> ChaosRun:
        self.world.administer(f'CREATE DATABASE "{self.database}"')
        self.stack.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stack.stop()
        keep = os.environ.get("CHAOS_KEEP_LOGS")  # a folder to copy the stack's logs to, for a post-mortem
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            for path in self.stack.log_paths:
                shutil.copy(path, Path(keep) / f"{self.prefix}-{path.name}")
        self.world.administer(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')

    def port(self, offset: int) -> str:
        return f"http://127.0.0.1:{self.stack.base_port + offset}/"

    # -- faults

    def kill_everything(self, postgres_mode: str | None = None) -> int:
        """SIGKILL every process of the stack, and stop PostgreSQL with `postgres_mode` at the same
        moment; the time every process was gone is added to `killed_at`."""
        stopper = None
        if postgres_mode:
            stopper = threading.Thread(target=self.world.postgres.stop, args=(postgres_mode,))
            stopper.start()
        killed = self.stack.kill()
        self.killed_at.append(time.time())
        if stopper:
            stopper.join()
        return killed

    def restart(self) -> None:
        """The same start command, state folder and ports (PostgreSQL first, if it is down)."""
        self.world.ensure_postgres()
        self.stack.start()

    def stack_alive(self) -> bool:
        return self.stack.process is not None and self.stack.process.poll() is None

    # -- the database (a fresh connection per look, so a PostgreSQL restart does not matter)

    def query(self, sql: str, **params) -> list[list]:
        conn = self.world.admin(self.database)
        try:
            if ":prefix" in sql:
                params["prefix"] = self.prefix + "%"
            return conn.run(sql, **params)
        finally:
            conn.close()

    def scalar(self, sql: str, **params):
        return self.query(sql, **params)[0][0]

    # Written on the stack's own schedule, whatever the requests: the sweep's record of its last run.
    SCHEDULED_TABLES = frozenset({"sweep_runs"})

    def table_counts(self) -> dict[str, int]:
        """Rows per table, but for the tables the stack writes on its own schedule."""
        tables = [r[0] for r in self.query(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
                  if r[0] not in self.SCHEDULED_TABLES]
        return {t: self.scalar(f'SELECT count(*) FROM "{t}"') for t in tables}

    def sessions(self) -> dict[str, str]:
        return dict(self.query("SELECT order_id, status FROM verification_sessions WHERE order_id LIKE :prefix"))

    def undelivered(self, *, besides: str = "") -> int:
        """Outbox rows of this run's orders (other than `besides`) neither delivered nor parked."""
        return self.scalar("SELECT count(*) FROM outbox WHERE order_id LIKE :prefix AND order_id <> :besides "
                           "AND delivered_at IS NULL AND dead_at IS NULL", besides=besides)

    def messages_in_flight(self) -> int:
        """Messages the local Pub/Sub stand-in has yet to see answered 2xx (this run's database is
        its own): while any is left, an email or a count may still be on its way."""
        return self.scalar("SELECT count(*) FROM local_tasks WHERE queue <> 'timers' "
                           "AND done_at IS NULL AND deleted_at IS NULL")

    def timer_sets(self) -> Counter:
        """order -> scheduled timers of its current deadline that have a local task (Cloud Tasks' stand-in)."""
        rows = self.query(
            "SELECT t.order_id, count(*) FROM countdown_timers t "
            "JOIN local_tasks q ON q.name LIKE '%' || t.task_name "
            "WHERE t.order_id LIKE :prefix GROUP BY t.order_id")
        return Counter(dict(rows))

    def events(self, *types: str) -> Counter:
        rows = self.query("SELECT order_id, count(*) FROM event_log WHERE order_id LIKE :prefix "
                          "AND type = ANY(:kinds) GROUP BY order_id", kinds=list(types))
        return Counter(dict(rows))

    # -- the outside world, this run's share

    def emails(self, *, distinct: bool = False) -> Counter:
        """(order id, kind) -> emails received by that order's customer (`distinct`: Message-IDs)."""
        orders = {customer_email(o): o for o in self.sessions()}
        received = self.world.inbox.by_recipient_and_kind(distinct=distinct)
        return Counter({(orders[rcpt], kind): n for (rcpt, kind), n in received.items() if rcpt in orders})

    def refund_calls(self) -> list[RefundCall]:
        return self.world.refunds.calls(self.prefix)

    def log_text(self) -> str:
        return self.stack.log_text()

    def pool_timeouts(self) -> int:
        return sum(1 for line in self.log_text().splitlines() if POOL_TIMEOUT.search(line))

    # -- signed requests

    def order_request(self, order_id: str, webhook_id: str | None = None, **extra) -> Request:
        """Signed when sent (each attempt), as a store signs each delivery; the webhook id stays the same."""
        body = order_body(order_id, customer_email(order_id), **extra)
        sign = functools.partial(standard_webhook_headers, self.secrets["ORDER_WEBHOOK_SECRET"],
                                 msg_id=webhook_id or f"msg_{uuid.uuid4().hex}")
        return Request(self.url + "/webhooks/orders", body, sign(body), order_id, sign=sign)

    def approval_request(self, order_id: str, verification_id: str) -> Request:
        decision = json.loads(veriff_body(order_id, 9001, verification_id=verification_id,
                                          decision_time=datetime.now(timezone.utc).isoformat()))
        decision["verification"]["person"] = {"dateOfBirth": "1980-01-01"}
        body = json.dumps(decision).encode()
        headers = veriff_headers(self.secrets["VERIFF_SHARED_SECRET"], self.secrets["VERIFF_API_KEY"], body)
        return Request(self.url + "/webhooks/veriff", body, headers, order_id)

    def health(self) -> tuple[int | str, dict]:
        try:
            # The deep check is the private sweep function's (the public intake has only /healthz).
            sweep = f"http://127.0.0.1:{self.stack.base_port + FUNCTIONS['sweep'][1]}"
            response = requests.get(sweep + "/health", timeout=10)
        except requests.RequestException as exc:
            return type(exc).__name__, {}
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, {}

    def wait(self, check: Callable, what: str, timeout: float) -> None:
        wait_for(check, what, timeout=timeout, every=0.5)

    def seconds(self) -> float:
        return round(time.monotonic() - self.started, 1)


# ---- clients -------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    url: str
    body: bytes
    headers: dict[str, str]
    key: str = ""  # what the request is about (an order id), for the tally
    method: str = "POST"
    at: float | None = None  # monotonic time not to send before
    sign: Callable[[bytes], dict[str, str]] | None = None  # fresh headers per attempt (timestamped signatures)


@dataclass
class Tally:
    """Every attempt's outcome (an HTTP status or an exception class name), and each request's last one."""

    attempts: Counter = field(default_factory=Counter)
    final: dict[int, int | str] = field(default_factory=dict)
    accepted_keys: set[str] = field(default_factory=set)
    bodies: dict[int, bytes] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, *, final: bool = True) -> Counter:
        return Counter(self.final.values()) if final else Counter(self.attempts)

    def share_2xx(self) -> float:
        return sum(1 for s in self.final.values() if isinstance(s, int) and 200 <= s < 300) / max(1, len(self.final))

    def five_hundreds(self) -> int:
        return sum(n for s, n in self.attempts.items() if isinstance(s, int) and s >= 500 and s != 503)

    def server_errors(self) -> int:
        return sum(n for s, n in self.attempts.items() if isinstance(s, int) and s >= 500)


def _transient(outcome: int | str) -> bool:
    return isinstance(outcome, str) or outcome >= 500


class Clients:
    """16 concurrent HTTP clients, bounded in count and time.

    With `retry_until` (a monotonic time) a request that got a 5xx, a timeout or no
    connection is sent again, unchanged, as a store's webhook sender would, until
    it gets an answer below 500 or the time is up.
    """

    def __init__(self, count: int = CLIENTS, timeout: float = CLIENT_TIMEOUT) -> None:
        self.count = count
        self.timeout = timeout
        self._local = threading.local()

    def _session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def send_one(self, request: Request) -> tuple[int | str, bytes]:
        try:
            headers = request.sign(request.body) if request.sign else request.headers
            response = self._session().request(request.method, request.url, data=request.body,
                                               headers=headers, timeout=self.timeout)
            return response.status_code, response.content
        except requests.RequestException as exc:
            self._local.__dict__.pop("session", None)  # a broken connection is not reused
            return type(exc).__name__, b""

    def run(self, requests_: list[Request], *, retry_until: float | None = None,
            fault: tuple[int, Callable[[], None]] | None = None, keep_bodies: bool = False) -> Tally:
        """Send every request, 16 at once. `fault = (n, action)` runs `action` in its own thread
        once `n` requests have been answered (mid-burst). Returns when all are done."""
        tally = Tally()
        fault_thread = None
        fired = threading.Event()

        def one(index: int, request: Request) -> None:
            nonlocal fault_thread
            if request.at:
                time.sleep(max(0.0, request.at - time.monotonic()))  # scheduled send, e.g. at a deadline
            while True:
                outcome, body = self.send_one(request)
                with tally.lock:
                    tally.attempts[outcome] += 1
                if not (retry_until and _transient(outcome) and time.monotonic() < retry_until):
                    break
                time.sleep(0.5)  # a sender's back-off between retries, not an assertion
            with tally.lock:
                tally.final[index] = outcome
                if keep_bodies:
                    tally.bodies[index] = body
                if isinstance(outcome, int) and 200 <= outcome < 300:
                    tally.accepted_keys.add(request.key)
                if fault and len(tally.final) >= fault[0] and not fired.is_set():
                    fired.set()
                    fault_thread = threading.Thread(target=fault[1], name="fault")
                    fault_thread.start()

        with ThreadPoolExecutor(self.count, thread_name_prefix="client") as pool:
            for future in [pool.submit(one, i, r) for i, r in enumerate(requests_)]:
                future.result()
        if fault_thread:
            fault_thread.join()
        return tally
