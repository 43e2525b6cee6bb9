"""The stand-ins' HTTP server: nothing it starts outlives `stop()`.

`ThreadingHTTPServer.server_close()` closes the listening socket only. A client that keeps its
connection alive (the service's HTTP clients all do) leaves the connection's handler thread
waiting for a next request, after the server stopped, for as long as the client's pool lives.
`StandInServer.server_close()` also shuts those connections down (the handler reads the end of
the stream and returns) and waits for every handler thread, a bounded time: a handler in a
scripted delay (seconds, in the tests) is waited for, never for ever.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from http.server import ThreadingHTTPServer


class StandInServer(ThreadingHTTPServer):
    daemon_threads = True  # a handler the bounded join gave up on never holds up the interpreter's exit
    join_timeout = 5.0  # seconds, for all handlers together

    def __init__(self, server_address, handler_class) -> None:
        self._open: dict[socket.socket, threading.Thread] = {}
        self._open_lock = threading.Lock()
        super().__init__(server_address, handler_class)

    def process_request(self, request, client_address) -> None:
        thread = threading.Thread(target=self.process_request_thread, args=(request, client_address),
                                  name=f"{type(self).__name__}-connection", daemon=True)
        with self._open_lock:
            self._open[request] = thread
        thread.start()

    def shutdown_request(self, request) -> None:
        with self._open_lock:
            self._open.pop(request, None)
        super().shutdown_request(request)

    def server_close(self) -> None:
        super().server_close()
        with self._open_lock:
            open_now = list(self._open.items())
        for connection, _ in open_now:
            with contextlib.suppress(OSError):  # the client closed it meanwhile
                connection.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + self.join_timeout
        for _, thread in open_now:
            thread.join(max(0.0, deadline - time.monotonic()))


def serve(server: StandInServer, name: str) -> threading.Thread:
    """Run `server` in a thread of its own (a short poll interval: `stop` returns sooner)."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True)
    thread.start()
    return thread


def stop(server: StandInServer, thread: threading.Thread | None) -> None:
    """Stop serving (if it was started: `shutdown` would wait for a loop that never ran), end
    every connection and handler, and wait for the serving thread."""
    if thread is not None:
        server.shutdown()
    server.server_close()
    if thread is not None:
        thread.join(timeout=5)
