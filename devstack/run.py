"""Run the whole system on this machine: PostgreSQL, every function, timers and messages.

    scripts/run-local.sh            # Ctrl-C stops everything; data stays in .local/

Each function runs as its own functions-framework process on 127.0.0.1, as it
would be deployed. Cloud Tasks is replaced by the durable local scheduler
(rows in PostgreSQL, delivered by a dispatcher thread here), Pub/Sub by direct
CloudEvent deliveries to the subscriber functions, Cloud Scheduler by a
thread that calls `sweep`. Stopping and starting again loses no timer.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCAL = Path(os.environ.get("LOCAL_STATE_DIR", ROOT / ".local"))
FUNCTIONS = {  # entry point -> (signature type, port offset)
    "webhook_intake": ("http", 0),
    "timer_expiry": ("http", 1),
    "sweep": ("http", 2),
    "send_customer_email": ("cloudevent", 3),
    "record_analytics": ("cloudevent", 4),
    "request_refund": ("cloudevent", 5),
    "operator_console": ("http", 6),
}
SUBSCRIBERS = {
    "customer-emails": "send_customer_email",
    "verification-events": "record_analytics",
    "order-actions": "request_refund",
}


def _dev_secrets() -> dict[str, str]:
    """Development secrets, made once and kept in .local/dev-secrets.json (git-ignored)."""
    path = LOCAL / "dev-secrets.json"
    if path.exists():
        return json.loads(path.read_text())
    values = {
        "ORDER_WEBHOOK_SECRET": "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "VERIFF_SHARED_SECRET": secrets.token_hex(16),
        "VERIFF_API_KEY": secrets.token_hex(8),
        "LIGHTSPEED_CLIENT_SECRET": secrets.token_hex(16),
    }
    path.write_text(json.dumps(values, indent=2))
    path.chmod(0o600)
    return values


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
    env.setdefault("SWEEP_GRACE", "5s")
    return env


STACK_ENV_KEYS = ("DATABASE_URL", "TASKS_BACKEND", "TIMER_URL", "EVENTS_BACKEND", "LOCAL_SUBSCRIBER_URLS",
                  "EMAIL_BACKEND", "REFUND_BACKEND", "VERIFF_BASE_URL", "LOCAL_VERIFY_URL")


def _write_stack_env(env: dict[str, str]) -> Path:
    """What `python -m shared.operator` needs to act on this stack, for shells that name no database."""
    path = LOCAL / "stack.env"
    path.write_text("# written by devstack/run.py for python -m shared.operator (mode 600)\n"
                    + "".join(f"{key}={env[key]}\n" for key in STACK_ENV_KEYS if env.get(key)))
    path.chmod(0o600)
    return path


def _start_database() -> tuple[str, object | None]:
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"], None
    from devstack.postgres import Postgres, free_port

    data_dir = LOCAL / "pgdata"
    port_file = LOCAL / "pg-port"
    port = int(port_file.read_text()) if port_file.exists() else free_port()
    server = Postgres(data_dir, port)
    if server.is_running():
        return server.url, None
    port_file.write_text(str(port))
    return server.start().url, server


def _wait_healthy(url: str, timeout: float = 60) -> None:
    """Until `url` answers; a busy machine (or early traffic) may slow a first answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def _example(base_port: int, env: dict[str, str]) -> str:
    from devstack.signing import order_body, standard_webhook_headers

    body = order_body("demo-" + secrets.token_hex(3), "customer@example.com")
    headers = standard_webhook_headers(env["ORDER_WEBHOOK_SECRET"], body)
    flags = " ".join(f"-H '{k}: {v}'" for k, v in headers.items())
    return (f"curl -sS -X POST http://127.0.0.1:{base_port}/webhooks/orders {flags} "
            f"--data '{body.decode()}'")


def main() -> int:
    LOCAL.mkdir(exist_ok=True)
    base_port = int(os.environ.get("LOCAL_BASE_PORT", "8080"))
    database_url, server = _start_database()
    env = _environment(base_port, database_url)
    os.environ.update(env)

    from shared import bootstrap
    from shared.config import Settings

    settings = Settings.from_env(env)  # fail here, naming the variable, before anything starts
    _write_stack_env(env)
    container = bootstrap.build(settings, migrate=True)  # also migrates the schema once, before the functions start

    processes = []
    stop = threading.Event()
    try:
        for name, (signature, offset) in FUNCTIONS.items():
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "functions_framework", "--target", name, "--source", str(ROOT / "main.py"),
                 "--signature-type", signature, "--host", "127.0.0.1", "--port", str(base_port + offset)],
                env={**env, "FUNCTION_TARGET": name}, cwd=ROOT,
                start_new_session=True,  # its own group: stopping it stops its gunicorn workers too
            ))
        _wait_healthy(f"http://127.0.0.1:{base_port}/healthz")

        from devstack.task_dispatcher import TaskDispatcher

        # Local functions answer in milliseconds: a 10 s timeout keeps the lease short (20 s), so a
        # delivery a crash interrupted is made again soon after the restart.
        dispatcher = TaskDispatcher(container.db, queue_name=settings.tasks_queue, request_timeout=10.0)
        threading.Thread(target=dispatcher.run_forever, args=(stop,), daemon=True, name="tasks").start()
        sweep_every = float(os.environ.get("LOCAL_SWEEP_SECONDS", "10"))
        threading.Thread(target=_call_periodically, daemon=True, name="scheduler",
                         args=(f"http://127.0.0.1:{base_port + FUNCTIONS['sweep'][1]}/", sweep_every, stop)).start()

        print(f"""
Local stack is up (Ctrl-C stops it; data in {LOCAL}).
  database          {database_url}
  webhook_intake    http://127.0.0.1:{base_port}/webhooks/orders | /webhooks/lightspeed | /webhooks/veriff | /healthz
  timer_expiry      http://127.0.0.1:{base_port + 1}/   (called by the local task dispatcher)
  sweep             http://127.0.0.1:{base_port + 2}/   (called every {sweep_every:g} s; GET /health checks the database and queue)
  subscribers       {env['LOCAL_SUBSCRIBER_URLS']}
  operator console  http://127.0.0.1:{base_port + FUNCTIONS['operator_console'][1]}/sessions   (signed in as dev@localhost)
                    or in a shell: .venv/bin/python -m shared.operator list --attention
  window            VERIFICATION_WINDOW={env.get('VERIFICATION_WINDOW', '72h')} REMINDER_OFFSETS={env.get('REMINDER_OFFSETS', '24h')}
Dev secrets are in {LOCAL / 'dev-secrets.json'}.

Place an order (signed now; the signature is valid for 5 minutes):
  {_example(base_port, env)}
or, any time:  .venv/bin/python -m devstack.send order ORDER-ID customer@example.com
               .venv/bin/python -m devstack.send veriff ORDER-ID approved
""", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        while not stop.is_set():
            for process in processes:
                if process.poll() is not None:
                    print(f"a function exited with {process.returncode}; stopping", file=sys.stderr)
                    return 1
            stop.wait(0.5)
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        stop.set()
        _stop_all(processes)
        container.db.engine.dispose()
        if server is not None:
            server.stop()


def _stop_all(processes: list[subprocess.Popen]) -> None:
    """SIGTERM each function's process group, SIGKILL what is left after 10 s: no worker may
    outlive the stack and keep its port from the next run."""
    for process in processes:
        _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + 10
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait()
        _signal_group(process, signal.SIGKILL)  # workers orphaned by a master that exited first


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
            with urllib.request.urlopen(request, timeout=30):
                pass
        except OSError as exc:
            print(f"sweep call failed: {exc}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
