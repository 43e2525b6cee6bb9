"""A scripted HTTP server on 127.0.0.1 that records what it is sent.

    with FakeHttpServer(Reply(202), Reply(500)) as server:
        client = SomeClient(base_url=server.url)
        ...
        assert server.requests[0].headers["authorization"] == "Bearer key"

Each request takes the next scripted Reply. A request that finds the script
empty is answered 500 and makes the `with` block fail on exit, so a test cannot
pass because of a reply it did not script.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Reply:
    """One scripted answer. A dict or list body is sent as JSON.

    `hang=True` sends nothing until the server stops: for client timeouts,
    without any sleep in the test.
    """

    status: int = 200
    body: bytes | str | dict | list | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    hang: bool = False


@dataclass(frozen=True)
class RecordedRequest:
    """What the server received. Header names are lower-cased."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class FakeHttpServer:
    """ThreadingHTTPServer on 127.0.0.1 and a free port, run in a thread; a context manager."""

    def __init__(self, *replies: Reply) -> None:
        self._replies: list[Reply] = list(replies)
        self._requests: list[RecordedRequest] = []
        self._unexpected: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. `http://127.0.0.1:40123` (no trailing slash)."""
        assert self._server is not None, "server not started"
        return f"http://{HOST}:{self._server.server_address[1]}"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def add(self, *replies: Reply) -> None:
        """Append replies to the script."""
        with self._lock:
            self._replies.extend(replies)

    def start(self) -> FakeHttpServer:
        server = ThreadingHTTPServer((HOST, 0), _handler_for(self))
        # Handler threads are joined by server_close(), so nothing outlives stop().
        server.daemon_threads = False
        server.block_on_close = True
        self._server = server
        # A short poll interval only makes stop() return sooner (shutdown waits for one poll).
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-http", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        assert self._thread is not None
        self._thread.join()
        self._server = None

    def __enter__(self) -> FakeHttpServer:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.stop()
        if exc_type is None and self._unexpected:
            paths = ", ".join(f"{r.method} {r.path}" for r in self._unexpected)
            raise AssertionError(f"fake server got requests with no scripted reply: {paths}")

    def _next_reply(self, request: RecordedRequest) -> Reply | None:
        with self._lock:
            self._requests.append(request)
            if self._replies:
                return self._replies.pop(0)
            self._unexpected.append(request)
            return None


def _handler_for(fake: FakeHttpServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # Bounds a read from a client that never sends its body.
        timeout = 10

        def do_GET(self) -> None:
            self._answer()

        do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output quiet

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            request = RecordedRequest(
                method=self.command,
                path=self.path,
                headers={name.lower(): value for name, value in self.headers.items()},
                body=body,
            )
            reply = fake._next_reply(request)
            if reply is None:
                reply = Reply(500, {"error": "fake server: no scripted reply"})
            if reply.hang:
                fake._release.wait()
                return
            payload, content_type = _encode(reply.body)
            try:
                self.send_response(reply.status)
                if content_type:
                    self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up; what it sent is recorded

    return Handler


def _encode(body: bytes | str | dict | list | None) -> tuple[bytes, str | None]:
    if body is None:
        return b"", None
    if isinstance(body, bytes):
        return body, "application/octet-stream"
    if isinstance(body, str):
        return body.encode(), "text/plain; charset=utf-8"
    return json.dumps(body).encode(), "application/json"


@contextlib.contextmanager
def refused_url() -> Iterator[str]:
    """A URL on 127.0.0.1 where connections are refused.

    The port is bound but never listened on, so the kernel refuses connections
    and no other process can take the port while the block runs.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        yield f"http://{HOST}:{sock.getsockname()[1]}"
