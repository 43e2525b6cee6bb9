"""An HTTP server on 127.0.0.1 standing in for `timer_expiry`: records every delivery.

Answers 200 unless a status script was set for a task name
(`respond(name, 500, 500)` fails the first two deliveries of that task).
Deliveries are keyed by the X-CloudTasks-TaskName header.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler

from devstack import http_server

TASK_NAME_HEADER = "X-CloudTasks-TaskName"


@dataclass(frozen=True)
class Delivery:
    received_at: datetime
    path: str
    headers: dict[str, str]  # keys lower-cased
    body: bytes
    status: int

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def task_name(self) -> str | None:
        return self.header(TASK_NAME_HEADER)


class RecordingTarget:
    """Start with `start()` (or as a context manager); `url` is where tasks should go."""

    def __init__(self, path: str = "/timer") -> None:
        self.path = path
        self._deliveries: list[Delivery] = []
        self._scripts: dict[str, deque[int]] = defaultdict(deque)
        self._changed = threading.Condition()
        self._server = http_server.StandInServer(("127.0.0.1", 0), self._handler_class())
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{self.path}"

    def start(self) -> RecordingTarget:
        self._thread = http_server.serve(self._server, "http-target")
        return self

    def stop(self) -> None:
        http_server.stop(self._server, self._thread)

    def __enter__(self) -> RecordingTarget:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def respond(self, task_name: str, *statuses: int) -> None:
        """Answer the next deliveries of `task_name` with these statuses, then 200."""
        with self._changed:
            self._scripts[task_name].extend(statuses)

    def deliveries(self, task_name: str | None = None) -> list[Delivery]:
        with self._changed:
            return [d for d in self._deliveries if task_name is None or d.task_name == task_name]

    def wait_for(self, task_name: str, count: int = 1, timeout: float = 30.0) -> list[Delivery]:
        """Wait until `task_name` has `count` deliveries (or the timeout); return them."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [d for d in self._deliveries if d.task_name == task_name]
                remaining = deadline - time.monotonic()
                if len(found) >= count or remaining <= 0:
                    return found
                self._changed.wait(remaining)

    def _record(self, path: str, headers: dict[str, str], body: bytes, received_at: datetime) -> int:
        with self._changed:
            script = self._scripts.get(headers.get(TASK_NAME_HEADER.lower(), ""))
            status = script.popleft() if script else 200
            self._deliveries.append(Delivery(received_at, path, headers, body, status))
            self._changed.notify_all()
            return status

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        target = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                received_at = datetime.now(timezone.utc)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                status = target._record(self.path, headers, body, received_at)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep test output quiet

        return Handler
