"""The edge of every function, over a real socket to a real `functions-framework` process
(gunicorn, as in the cloud): malformed HTTP is answered 4xx or the connection is closed,
never 5xx (issue 24, item 5), and an unsigned request is refused before any database work
(item 6)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from shared.functions_table import FUNCTIONS
from tests.conftest import base_env
from tests.raw_http import PATHS, exchange, garbage_requests, is_unknown_coding, malformed_requests, status_of

ROOT = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).with_name("functions-framework")
SUBSCRIBERS = ("verification-events=http://127.0.0.1:9/e,customer-emails=http://127.0.0.1:9/m,"
               "order-actions=http://127.0.0.1:9/a")
CONSOLE_SECRET = "c" * 40
UNREACHABLE_DATABASE = "postgresql+pg8000://verifier:pw@127.0.0.1:9/verification"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class FunctionProcess:
    """`functions-framework --target=<entry point>` on a free port of 127.0.0.1."""

    def __init__(self, entry_point: str, signature: str, env: dict[str, str], log_dir: Path) -> None:
        self.entry_point, self.port = entry_point, free_port()
        self.log_path = log_dir / f"{entry_point}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [str(CLI), f"--target={entry_point}", "--source=main.py", f"--signature-type={signature}",
                 "--host=127.0.0.1", f"--port={self.port}"],
                cwd=ROOT, env={**env, "FUNCTION_TARGET": entry_point, "XDG_RUNTIME_DIR": str(log_dir)},
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_listening(self, timeout: float = 60) -> FunctionProcess:
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                assert self.process.poll() is None, self.log_path.read_text(errors="replace")[-2000:]
                assert time.monotonic() < deadline, f"{self.entry_point} did not start"
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def running_functions(env: dict[str, str], log_dir: Path, entry_points=None):
    chosen = [f for f in FUNCTIONS if entry_points is None or f.entry_point in entry_points]
    processes = [FunctionProcess(f.entry_point, f.signature, env, log_dir) for f in chosen]
    try:
        for process in processes:
            process.wait_listening()
        yield {p.entry_point: p for p in processes}
    finally:
        for process in processes:
            process.stop()


def function_env(database_url: str, **overrides: str) -> dict[str, str]:
    return {**os.environ, **base_env(database_url, LOCAL_SUBSCRIBER_URLS=SUBSCRIBERS, CONSOLE_SECRET=CONSOLE_SECRET,
                                     CONSOLE_OPERATORS="ops@example.com", IAP_AUDIENCE="/projects/1/apps/edge"),
            "NO_GCE_CHECK": "true", "LOG_LEVEL": "INFO", **overrides}


def test_malformed_http_is_answered_4xx_or_closed_by_every_function(database_url, db, tmp_path):
    with running_functions(function_env(database_url), tmp_path) as functions:
        cases = [(fn.entry_point, shape, fn.port, raw, close) for fn in functions.values()
                 for shape, raw, close in malformed_requests(PATHS.get(fn.entry_point, "/"))]
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda c: (c[0], c[1], exchange(c[2], c[3], close_write=c[4])), cases))
        logs = {name: fn.log_text() for name, fn in functions.items()}
    statuses = {(function, shape): status_of(answer) for function, shape, answer in answers}
    server_errors = {case: status for case, status in statuses.items() if status is not None and status >= 500}
    assert server_errors == {}
    assert all(status is None or 400 <= status < 500 for status in statuses.values()), statuses
    # The reproduction of the issue: the unparseable chunk size is a plain 400, on every function.
    assert {statuses[(f.entry_point, "chunk size zz")] for f in FUNCTIONS} == {400}
    for function, text in logs.items():
        assert "unhandled error" not in text and "Traceback" not in text, function
        assert "malformed request body refused" in text, function


def test_unsigned_webhooks_are_401_while_the_database_is_unreachable(tmp_path):
    """A cold intake with no database: an unsigned delivery is refused on its signature (401),
    without trying the database; a signed one is 503 with a body that names nothing of ours."""
    from tests.functions.test_webhook_intake import order_request

    env = function_env(UNREACHABLE_DATABASE)
    with running_functions(env, tmp_path, entry_points={"webhook_intake"}) as functions:
        port = functions["webhook_intake"].port
        answers = {}
        for path, content_type, body in (("/webhooks/orders", "application/json", b'{"orderId": "1"}'),
                                         ("/webhooks/veriff", "application/json", b"{}"),
                                         ("/webhooks/lightspeed", "application/x-www-form-urlencoded", b"a=1")):
            raw = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
                   f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
            answers[path] = exchange(port, raw)
        body, headers = order_request("edge-1")
        signed = (b"POST /webhooks/orders HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  + b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items())
                  + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        unavailable = exchange(port, signed)
        log = functions["webhook_intake"].log_text()
    assert {path: status_of(answer) for path, answer in answers.items()} == dict.fromkeys(answers, 401)
    assert log.count("unavailable: database unavailable") == 1  # the signed one alone tried the database
    assert status_of(unavailable) == 503
    public = unavailable.partition(b"\r\n\r\n")[2].decode()
    assert '"error": "temporarily unavailable"' in public
    for secret in ("database", "component", "DATABASE_URL", "version", "upgrade"):
        assert secret not in public.lower()


def test_500_random_malformed_requests_get_no_5xx_from_any_function(database_url, db, tmp_path):
    """At least 500 raw mangled requests across the seven functions: 4xx or a closed connection,
    and no error body naming a variable, a version or the database."""
    with running_functions(function_env(database_url), tmp_path) as functions:
        cases = [(fn.entry_point, shape, fn.port, raw, close) for index, fn in enumerate(functions.values())
                 for shape, raw, close in garbage_requests(PATHS.get(fn.entry_point, "/"), 75, seed=24 + index)]
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda c: (c[0], c[1], exchange(c[2], c[3], close_write=c[4], timeout=5)), cases))
    assert len(answers) >= 500
    # One 5xx is the server's own, on purpose (tests.raw_http.is_unknown_coding): gunicorn's 501.
    unknown_coding = [a for _, _, a in answers if is_unknown_coding(a)]
    server_errors = [(function, shape, answer[:200]) for function, shape, answer in answers
                     if (status_of(answer) or 0) >= 500 and answer not in unknown_coding]
    statuses = sorted({str(status_of(a)) for _, _, a in answers})
    print(f"\n{len(answers)} raw requests; statuses {statuses}; gunicorn's 501 for an unknown transfer coding: "
          f"{len(unknown_coding)}")
    assert server_errors == []
    for function, shape, answer in answers:
        body = answer.partition(b"\r\n\r\n")[2].lower()
        for internal in (b"database", b"database_url", b"secret", b"schema", b"upgrade", b"traceback"):
            assert internal not in body, (function, shape, body[:200])
