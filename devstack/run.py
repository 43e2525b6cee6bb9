"""Run the whole system on this machine: PostgreSQL, every function, timers and messages.

    scripts/run-local.sh            # Ctrl-C stops everything; data stays in .local/

Each function runs as its own functions-framework process on 127.0.0.1, as it
would be deployed. Cloud Tasks is replaced by the durable local scheduler
(rows in PostgreSQL, delivered by a dispatcher thread here), Pub/Sub by direct
CloudEvent deliveries to the subscriber functions, Cloud Scheduler by a
thread that calls `sweep`. Stopping and starting again loses no timer.

One stack per state folder (`.local/run/stack.lock`, held while it runs). Whatever ends it --
Ctrl-C, SIGTERM, a setting or port that stops the start, a function that exits -- stops
every function and the PostgreSQL it started, and says why in one line (exit status 1 on a
failure). A PostgreSQL or functions left behind by a run killed with -9 are stopped by the
next start. The functions' JSON log lines are told as a story (`devstack.console`).
"""

from __future__ import annotations

import base64
import collections
import contextlib
import fcntl
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

from devstack.signing import SHOPIFY_SHOP_DOMAIN
from shared.errors import ServiceError
from shared.functions_table import FUNCTIONS as DEPLOYED

ROOT = Path(__file__).resolve().parents[1]
LOCAL = Path(os.environ.get("LOCAL_STATE_DIR", ROOT / ".local"))
RUN = LOCAL / "run"  # this run's lock, function pids and gunicorn control sockets
# Entry point -> (signature type, port offset), in the order of the one list of functions.
FUNCTIONS = {f.entry_point: (f.signature, offset) for offset, f in enumerate(DEPLOYED)}
SUBSCRIBERS = {f.trigger: f.entry_point for f in DEPLOYED if f.trigger}  # topic -> subscriber
START_TIMEOUT = 60  # seconds every function may take to answer its first request
# The store stand-ins listen past the functions: the outcome webhook receiver at base + 9
# (`devstack.outcome_receiver`; LOCAL_OUTCOME_WEBHOOK=off, or an OUTCOME_WEBHOOK_URL of your own,
# leaves it out), then the Shopify Admin GraphQL stand-in at base + 10 and the WooCommerce REST
# stand-in at base + 11 (`devstack.stores`; each left out when SHOPIFY_ADMIN_URL / WOOCOMMERCE_URL
# is set already, e.g. to a stand-in a bench started).
OUTCOME_RECEIVER_OFFSET = 9
SHOPIFY_STANDIN_OFFSET = 10
WOOCOMMERCE_STANDIN_OFFSET = 11


class StartFailure(Exception):
    """The stack cannot start or keep running: one line, said once, and everything stops."""


class _Stopped(Exception):
    """SIGTERM or SIGHUP: stop as Ctrl-C does."""


def _dev_secrets() -> dict[str, str]:
    """Development secrets, made once and kept in .local/dev-secrets.json (git-ignored)."""
    path = LOCAL / "dev-secrets.json"
    kept = json.loads(path.read_text()) if path.exists() else {}
    made = {
        "ORDER_WEBHOOK_SECRET": lambda: "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "VERIFF_SHARED_SECRET": lambda: secrets.token_hex(16),
        "VERIFF_API_KEY": lambda: secrets.token_hex(8),
        "LIGHTSPEED_CLIENT_SECRET": lambda: secrets.token_hex(16),
        # Shopify's webhooks (devstack.send shopify ...): the app's client secret and the shop
        "SHOPIFY_CLIENT_SECRET": lambda: "shpss_" + secrets.token_hex(16),
        "SHOPIFY_SHOP_DOMAIN": lambda: SHOPIFY_SHOP_DOMAIN,
        # the Admin API access token the local Shopify stand-in accepts
        "SHOPIFY_ADMIN_TOKEN": lambda: "shpat_" + secrets.token_hex(16),
        # WooCommerce: the webhook's secret, and the REST API keys the local stand-in accepts
        "WOOCOMMERCE_WEBHOOK_SECRET": lambda: secrets.token_hex(16),
        "WOOCOMMERCE_CONSUMER_KEY": lambda: "ck_" + secrets.token_hex(20),
        "WOOCOMMERCE_CONSUMER_SECRET": lambda: "cs_" + secrets.token_hex(20),
        # the local outcome webhook receiver's Standard Webhooks secret
        "OUTCOME_WEBHOOK_SECRET": lambda: "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
        # verify once: the pepper of the customer keys (DESIGN.md 3b)
        "CUSTOMER_KEY_SECRET": lambda: secrets.token_hex(32),
    }
    missing = {key: make() for key, make in made.items() if key not in kept}
    if missing:  # a file from before a source was added gains that source's secrets
        kept.update(missing)
        path.write_text(json.dumps(kept, indent=2))
        path.chmod(0o600)
    return kept


def _outcome_secret() -> str:
    """The outcome webhook's dev secret (added to a dev-secrets.json written before it existed)."""
    path = LOCAL / "dev-secrets.json"
    values = json.loads(path.read_text())
    if "OUTCOME_WEBHOOK_SECRET" not in values:
        values["OUTCOME_WEBHOOK_SECRET"] = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        path.write_text(json.dumps(values, indent=2))
    return values["OUTCOME_WEBHOOK_SECRET"]


def _environment(base_port: int, database_url: str) -> dict[str, str]:
    env = dict(os.environ)
    for key, value in _dev_secrets().items():
        env.setdefault(key, value)
    url = {name: f"http://127.0.0.1:{base_port + offset}" for name, (_, offset) in FUNCTIONS.items()}
    env.update({
        "DATABASE_URL": database_url,
        "TASKS_BACKEND": "local",
        "TIMER_URL": url["timer_expiry"] + "/",
        "EVENTS_BACKEND": "local",
        "LOCAL_SUBSCRIBER_URLS": ",".join(f"{t}={url[f]}/" for t, f in SUBSCRIBERS.items()),
        "NO_GCE_CHECK": "true",
        "PYTHONUNBUFFERED": "1",
    })
    env.setdefault("EMAIL_BACKEND", "console")
    env.setdefault("REFUND_BACKEND", "manual")
    env.setdefault("VERIFF_BASE_URL", "local")
    # The emailed link opens the console's stand-in for the provider's page, which posts to the intake.
    env.setdefault("LOCAL_VERIFY_URL", url["operator_console"] + "/verify")
    env.setdefault("LOCAL_INTAKE_URL", url["webhook_intake"])
    env.setdefault("CONSOLE_AUTH", "dev")
    env.setdefault("CONSOLE_SECRET", secrets.token_hex(16))
    # The console's sign-in for this run: only the URL printed below carries it (a tunnel to
    # 127.0.0.1 passes the console's other checks).
    env.setdefault("CONSOLE_DEV_TOKEN", secrets.token_urlsafe(32))
    env.setdefault("SWEEP_GRACE", "5s")
    if env.get("LOCAL_OUTCOME_WEBHOOK", "on") != "off" and not env.get("OUTCOME_WEBHOOK_URL"):
        env["OUTCOME_WEBHOOK_URL"] = f"http://127.0.0.1:{base_port + OUTCOME_RECEIVER_OFFSET}/outcomes"
        env["OUTCOME_WEBHOOK_SECRET"] = _outcome_secret()
        env["LOCAL_OUTCOME_RECEIVER"] = "on"  # this run starts the receiver
    return env


def _start_outcome_receiver(base_port: int, env: dict[str, str], cleanup: contextlib.ExitStack) -> None:
    """The strict outcome webhook receiver (`devstack.outcome_receiver`), in this process."""
    if env.get("LOCAL_OUTCOME_RECEIVER") != "on":
        return
    from devstack.outcome_receiver import OutcomeReceiver

    port = base_port + OUTCOME_RECEIVER_OFFSET
    try:
        receiver = OutcomeReceiver(env["OUTCOME_WEBHOOK_SECRET"], port=port)
    except OSError:
        raise StartFailure(f"port {port} (outcome webhook receiver) is already in use by another program; "
                           "free it, move the stack's ports with LOCAL_BASE_PORT, or set "
                           "LOCAL_OUTCOME_WEBHOOK=off") from None
    receiver.start()
    cleanup.callback(receiver.stop)


STACK_ENV_KEYS = ("DATABASE_URL", "TASKS_BACKEND", "TIMER_URL", "EVENTS_BACKEND", "LOCAL_SUBSCRIBER_URLS",
                  "EMAIL_BACKEND", "REFUND_BACKEND", "VERIFF_BASE_URL", "LOCAL_VERIFY_URL",
                  "LOCAL_INTAKE_URL")  # where `python -m devstack.send` posts


def _write_stack_env(env: dict[str, str]) -> Path:
    """What `python -m shared.operator` (and `devstack.send`) need to act on this stack, for shells
    that name no database; read by `shared.operator.read_stack_env`."""
    path = LOCAL / "stack.env"
    path.write_text("# written by devstack/run.py for python -m shared.operator (mode 600)\n"
                    + "".join(f"{key}={env[key]}\n" for key in STACK_ENV_KEYS if env.get(key)))
    path.chmod(0o600)
    return path


def _take_lock() -> bool:
    """Hold `.local/run/stack.lock` for this process's lifetime (the kernel lets go when it ends,
    even on kill -9): a second copy on the same state folder refuses, naming the first."""
    global _LOCK_FD
    RUN.mkdir(parents=True, exist_ok=True)
    fd = os.open(RUN / "stack.lock", os.O_RDWR | os.O_CREAT, 0o600)  # not inherited by children
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        print(f"devstack: a local stack is already running from {LOCAL} (pid {holder}); "
              "stop it first (Ctrl-C in its terminal)", file=sys.stderr, flush=True)
        return False
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _LOCK_FD = fd
    return True


_LOCK_FD: int | None = None


def _stop_on_signals() -> None:
    def stop(signum, _frame):
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # stopping is not interrupted
            signal.signal(sig, signal.SIG_IGN)
        raise KeyboardInterrupt if signum == signal.SIGINT else _Stopped()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)


def _check_ports_free(base_port: int) -> None:
    for name, (_, offset) in FUNCTIONS.items():
        port = base_port + offset
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                raise StartFailure(f"port {port} ({name}) is already in use by another program; "
                                   f"free it or move the stack's ports with LOCAL_BASE_PORT") from None


def _start_database(cleanup: contextlib.ExitStack) -> str:
    """This stack's own PostgreSQL, stopped on every way out. One left running in the data folder
    by a run that was killed (-9) is stopped first: holding the lock, nobody else owns it."""
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    from devstack.postgres import Postgres, free_port

    data_dir = LOCAL / "pgdata"
    port_file = LOCAL / "pg-port"
    port = int(port_file.read_text()) if port_file.exists() else free_port()
    server = Postgres(data_dir, port)
    if server.is_running():
        print(f"devstack: PostgreSQL in {data_dir} was left running by an earlier run; restarting it",
              file=sys.stderr, flush=True)
        server.stop()
    port_file.write_text(str(port))
    cleanup.callback(server.stop)  # before start: a start that fails half-way is stopped too
    try:
        return server.start().url
    except subprocess.CalledProcessError:
        raise StartFailure(f"PostgreSQL could not start on port {port} (its log: {data_dir / 'server.log'}; "
                           f"{port_file} names the port)") from None
    except RuntimeError as exc:  # initdb failed, or no server binaries
        raise StartFailure(f"PostgreSQL could not start: {str(exc).splitlines()[0]}") from None


class Function:
    """One function's functions-framework process; the last lines it wrote to stderr kept."""

    def __init__(self, name: str, port: int, process: subprocess.Popen) -> None:
        self.name, self.port, self.process = name, port, process
        self.started = False
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=20)

    def reason(self) -> str:
        """Why it stopped, in one line: the last line of its traceback or of gunicorn's error."""
        lines = [line.strip() for line in self.stderr_tail if line.strip()]
        if not lines:
            return "no reason given (see above)"
        if any("Connection in use" in line for line in lines):  # taken after the check at start
            return f"port {self.port} is already in use by another program"
        last = lines[-1]
        for prefix in ("shared.errors.", "[ERROR] "):
            last = last.replace(prefix, "")
        return last[:300]


def _start_functions(base_port: int, env: dict[str, str], cleanup: contextlib.ExitStack) -> list[Function]:
    from devstack.console import Console

    console = Console()
    # LOCAL_LOG=json: every line as the functions wrote it, straight to this stack's stdout, unread.
    raw = os.environ.get("LOCAL_LOG") == "json"
    functions: list[Function] = []
    cleanup.callback(_stop_all, functions)
    pids = RUN / "functions.pids"
    for name, (signature, offset) in FUNCTIONS.items():
        # gunicorn (25.1+) opens a control socket in $XDG_RUNTIME_DIR, else in ~/.gunicorn, where
        # two stacks (or two functions) collide: each function gets its own under .local/run.
        control = RUN / name
        control.mkdir(parents=True, exist_ok=True)
        process = subprocess.Popen(
            [sys.executable, "-m", "functions_framework", "--target", name, "--source", str(ROOT / "main.py"),
             "--signature-type", signature, "--host", "127.0.0.1", "--port", str(base_port + offset)],
            env={**env, "FUNCTION_TARGET": name, "XDG_RUNTIME_DIR": str(control)}, cwd=ROOT,
            stdout=None if raw else subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
            start_new_session=True,  # its own group: stopping it stops its gunicorn workers too
        )
        function = Function(name, base_port + offset, process)
        functions.append(function)
        with pids.open("a") as out:
            out.write(f"{process.pid} {name}\n")
        if not raw:
            threading.Thread(target=console.pump, args=(name, process.stdout), daemon=True).start()
        threading.Thread(target=_keep_stderr, args=(function, console), daemon=True).start()
    return functions


def _keep_stderr(function: Function, console) -> None:
    for line in function.process.stderr:
        function.stderr_tail.append(line)
        if function.started:
            console.plain(function.name, line)


def _stop_leftover_functions() -> None:
    """Functions of an earlier run killed with -9 (their own sessions outlive it) would hold the
    ports: stop the ones the pid file names, if they still are that function."""
    pids = RUN / "functions.pids"
    stopped = []
    if pids.exists():
        for line in pids.read_text().splitlines():
            pid, _, name = line.partition(" ")
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"functions_framework" in command and name.encode() in command:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(int(pid), signal.SIGKILL)
                    stopped.append(name)
    if stopped:
        print(f"devstack: stopped {len(stopped)} functions an earlier run left running", file=sys.stderr, flush=True)
        time.sleep(0.5)  # their ports are free once they are gone
    pids.unlink(missing_ok=True)


def _wait_until_up(functions: list[Function]) -> None:
    """Until every function listens (functions-framework imports the code before gunicorn binds)
    and the intake answers /healthz; a function that exits first stops the start at once,
    with its reason."""
    deadline = time.monotonic() + START_TIMEOUT
    waiting = list(functions)
    while waiting:
        for function in waiting:
            if function.process.poll() is not None:
                time.sleep(0.2)  # its last stderr lines are still being read
                raise StartFailure(f"{function.name} could not start: {function.reason()}")
        if _listens(waiting[0].port) and (waiting[0] is not functions[0] or _healthy(waiting[0].port)):
            waiting.pop(0)
            continue
        if time.monotonic() > deadline:
            raise StartFailure(f"{waiting[0].name} did not answer on port {waiting[0].port} "
                               f"within {START_TIMEOUT} s")
        time.sleep(0.2)


def _listens(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


_LOCAL_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # proxies never see 127.0.0.1


def _healthy(port: int) -> bool:
    try:
        with _LOCAL_HTTP.open(f"http://127.0.0.1:{port}/healthz", timeout=5):
            return True
    except OSError:
        return False


def _print_banner(base_port: int, env: dict[str, str], database_url: str, sweep_every: float) -> None:
    print(f"""
Local stack is up (Ctrl-C stops it; data in {LOCAL}).
  database          {database_url}
  webhook_intake    http://127.0.0.1:{base_port}/webhooks/orders | /webhooks/lightspeed | /webhooks/shopify | /webhooks/woocommerce | /webhooks/veriff | /healthz
  shopify           {env.get('SHOPIFY_ADMIN_URL', '(none)')}   (Admin GraphQL; a stand-in unless SHOPIFY_ADMIN_URL was set)
  woocommerce       {env.get('WOOCOMMERCE_URL', '(none)')}   (the store's REST API; a stand-in unless WOOCOMMERCE_URL was set)
  timer_expiry      http://127.0.0.1:{base_port + 1}/   (called by the local task dispatcher)
  sweep             http://127.0.0.1:{base_port + 2}/   (called every {sweep_every:g} s; GET /health checks the database and queue)
  subscribers       {env['LOCAL_SUBSCRIBER_URLS']}
  operator console  {console_url(base_port, env)}
                    (opening this URL signs the browser in as dev@localhost; keep it to yourself)
                    or in a shell: .venv/bin/python -m shared.operator list --attention
  outcome webhooks  {env.get('OUTCOME_WEBHOOK_URL') or 'off'}{'   (the local receiver: GET /calls lists what it got)' if env.get('LOCAL_OUTCOME_RECEIVER') == 'on' else ''}
  window            VERIFICATION_WINDOW={env.get('VERIFICATION_WINDOW', '72h')} REMINDER_OFFSETS={env.get('REMINDER_OFFSETS', '24h')}
Dev secrets are in {LOCAL / 'dev-secrets.json'}.

Place an order (signed now; the signature is valid for 5 minutes):
  {_example(base_port, env)}
or, any time:  .venv/bin/python -m devstack.send order ORDER-ID customer@example.com
               .venv/bin/python -m devstack.send veriff ORDER-ID approved
Each step of an order's life is one line below (LOCAL_LOG=json shows every log line as it is).
""", flush=True)


def console_url(base_port: int, env: dict[str, str]) -> str:
    """The console's list with this run's sign-in token: opening it signs the browser in."""
    port = base_port + FUNCTIONS["operator_console"][1]
    return f"http://127.0.0.1:{port}/sessions?dev_token={quote(env['CONSOLE_DEV_TOKEN'], safe='')}"


def _example(base_port: int, env: dict[str, str]) -> str:
    from devstack.signing import order_body, standard_webhook_headers

    body = order_body("demo-" + secrets.token_hex(3), "customer@example.com")
    headers = standard_webhook_headers(env["ORDER_WEBHOOK_SECRET"], body)
    flags = " ".join(f"-H '{k}: {v}'" for k, v in headers.items())
    return (f"curl -sS -X POST http://127.0.0.1:{base_port}/webhooks/orders {flags} "
            f"--data '{body.decode()}'")


def main() -> int:
    """Start the stack and watch it; every way out stops what it started (exit 1 on a failure)."""
    LOCAL.mkdir(parents=True, exist_ok=True)
    if not _take_lock():
        return 1
    _stop_on_signals()
    cleanup = contextlib.ExitStack()
    try:
        return _run(cleanup)
    except (KeyboardInterrupt, _Stopped):
        return 0
    except (StartFailure, ServiceError) as exc:  # ConfigError names the variable, never its value
        print(f"devstack: {exc}; stopped", file=sys.stderr, flush=True)
        return 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # a second Ctrl-C cannot cut stopping short
            signal.signal(sig, signal.SIG_IGN)
        cleanup.close()


def _run(cleanup: contextlib.ExitStack) -> int:
    base_port = int(os.environ.get("LOCAL_BASE_PORT", "8080"))
    _stop_leftover_functions()
    _check_ports_free(base_port)
    database_url = _start_database(cleanup)
    env = _environment(base_port, database_url)
    _start_store_standins(base_port, env, cleanup)
    os.environ.update(env)

    from shared import bootstrap
    from shared.config import Settings

    settings = Settings.from_env(env)  # fail here, naming the variable, before anything starts
    _write_stack_env(env)
    container = bootstrap.build(settings, migrate=True)  # also migrates the schema once, before the functions start
    cleanup.callback(container.db.engine.dispose)

    _start_outcome_receiver(base_port, env, cleanup)
    functions = _start_functions(base_port, env, cleanup)
    stop = threading.Event()
    cleanup.callback(stop.set)  # runs before the functions are stopped (callbacks unwind in reverse)
    _wait_until_up(functions)

    from devstack.task_dispatcher import TaskDispatcher

    # Local functions answer in milliseconds: a 10 s timeout keeps the lease short (20 s), so a
    # delivery a crash interrupted is made again soon after the restart.
    dispatcher = TaskDispatcher(container.db, queue_name=settings.tasks.queue, request_timeout=10.0)
    threading.Thread(target=dispatcher.run_forever, args=(stop,), daemon=True, name="tasks").start()
    sweep_every = float(os.environ.get("LOCAL_SWEEP_SECONDS", "10"))
    threading.Thread(target=_call_periodically, daemon=True, name="scheduler",
                     args=(f"http://127.0.0.1:{base_port + FUNCTIONS['sweep'][1]}/", sweep_every, stop)).start()
    _print_banner(base_port, env, database_url, sweep_every)
    for function in functions:
        function.started = True  # from now on its stderr goes to the console as it comes
    while True:
        for function in functions:
            if function.process.poll() is not None:
                raise StartFailure(f"{function.name} exited with status {function.process.returncode}"
                                   f": {function.reason()}")
        time.sleep(0.5)


def _start_store_standins(base_port: int, env: dict[str, str], cleanup: contextlib.ExitStack) -> None:
    """The Shopify (`devstack.stores.shopify`) and WooCommerce (`devstack.stores.woocommerce`)
    stand-ins, at base + 10 and + 11, each unless SHOPIFY_ADMIN_URL / WOOCOMMERCE_URL names a store
    already. They make an order they do not know on its first call (the stack's orders come from
    `devstack.send`); each write the connector makes is one line (the story line of its outcome,
    `order shopify:1001: hold placed`, follows from the `store.*` event)."""
    from devstack.stores.shopify import ShopifyStandIn
    from devstack.stores.woocommerce import WooCommerceStandIn, story_line

    def port_taken(port: int, what: str, variable: str) -> StartFailure:
        return StartFailure(f"port {port} ({what}) is already in use by another program; free it, move the "
                            f"stack's ports with LOCAL_BASE_PORT, or point {variable} at a store of your own")

    if not os.environ.get("SHOPIFY_ADMIN_URL"):
        def told(mutation) -> None:
            order = (mutation.order or "?").rsplit("/", 1)[-1]
            print(f"{time.strftime('%H:%M:%S')}  shopify stand-in: order shopify:{order}: {mutation.name}", flush=True)

        port = base_port + SHOPIFY_STANDIN_OFFSET
        try:
            shop = ShopifyStandIn(token=env["SHOPIFY_ADMIN_TOKEN"], api_version=env.get("SHOPIFY_API_VERSION", "2025-10"),
                                  auto_create=True, port=port, on_mutation=told).start()
        except OSError:
            raise port_taken(port, "Shopify stand-in", "SHOPIFY_ADMIN_URL") from None
        cleanup.callback(shop.stop)
        env["SHOPIFY_ADMIN_URL"] = shop.url
    if not os.environ.get("WOOCOMMERCE_URL"):
        def tell(call) -> None:
            line = story_line(call, reads=False)
            if line:
                print(line, flush=True)

        port = base_port + WOOCOMMERCE_STANDIN_OFFSET
        try:
            standin = WooCommerceStandIn(env["WOOCOMMERCE_CONSUMER_KEY"], env["WOOCOMMERCE_CONSUMER_SECRET"],
                                         port=port, autocreate=True, on_call=tell).start()
        except OSError:
            raise port_taken(port, "WooCommerce stand-in", "WOOCOMMERCE_URL") from None
        cleanup.callback(standin.stop)
        env["WOOCOMMERCE_URL"] = standin.url


def _stop_all(functions: list[Function]) -> None:
    """SIGTERM each function's process group, SIGKILL what is left after 10 s: no worker may
    outlive the stack and keep its port from the next run."""
    for function in functions:
        _signal_group(function.process, signal.SIGTERM)
    deadline = time.monotonic() + 10
    for function in functions:
        try:
            function.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(function.process, signal.SIGKILL)
            function.process.wait()
        _signal_group(function.process, signal.SIGKILL)  # workers orphaned by a master that exited first
    (RUN / "functions.pids").unlink(missing_ok=True)


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def _call_periodically(url: str, every: float, stop: threading.Event) -> None:
    """Cloud Scheduler's stand-in."""
    while not stop.wait(every):
        try:
            request = urllib.request.Request(url, data=b"{}", method="POST",
                                             headers={"Content-Type": "application/json"})
            with _LOCAL_HTTP.open(request, timeout=30):
                pass
        except OSError as exc:
            if not stop.is_set():
                print(f"sweep call failed: {exc}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
