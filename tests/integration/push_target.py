"""A CloudEvent subscriber for the push tests, and a runner for it under `functions-framework`.

`record_push` is loaded by the functions-framework CLI (`--source` this file).
It appends one JSON line per delivery to the file named by PUSH_TARGET_OUTPUT:
the CloudEvent attributes it received, its data, and the decoded message
data. A message with the attribute `fail_first=1` is answered 500 on its first
delivery (the line is still written), to show redelivery.

`FunctionsFramework` runs the CLI as a subprocess on 127.0.0.1 and stops it.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import functions_framework

HERE = Path(__file__).resolve()


@functions_framework.cloud_event
def record_push(event) -> None:
    data = event.data
    message = data.get("message", {}) if isinstance(data, dict) else {}
    record: dict[str, Any] = {
        "attributes": {k: v for k, v in event.get_attributes().items() if k != "data"},
        "data": data,
        "decoded": base64.b64decode(message["data"]).decode() if "data" in message else None,
    }
    output = Path(os.environ["PUSH_TARGET_OUTPUT"])
    with output.open("a") as handle:
        handle.write(json.dumps(record) + "\n")
    if message.get("attributes", {}).get("fail_first") == "1":
        marker = output.with_name(output.name + f".failed-{event['id']}")
        if not marker.exists():
            marker.touch()
            raise RuntimeError("failing the first delivery on purpose")


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every delivery `record_push` wrote so far."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for_records(path: Path, count: int, wait: float = 30.0) -> list[dict[str, Any]]:
    """The records once at least `count` are written, or what is there after `wait` s."""
    deadline = time.monotonic() + wait
    records = read_records(path)
    while len(records) < count and time.monotonic() < deadline:
        time.sleep(0.1)
        records = read_records(path)
    return records


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class FunctionsFramework:
    """`functions-framework --target record_push` on 127.0.0.1, in its own process group."""

    def __init__(self, output: Path, target: str = "record_push", source: Path = HERE) -> None:
        self.output = output
        self.target = target
        self.source = source
        self.port = _free_port()
        self._process: subprocess.Popen | None = None
        self._log = output.with_name(output.name + ".server.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self, timeout: float = 30.0) -> FunctionsFramework:
        cli = Path(sys.executable).with_name("functions-framework")
        env = dict(os.environ, PUSH_TARGET_OUTPUT=str(self.output))
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(
                [str(cli), f"--target={self.target}", "--signature-type=cloudevent",
                 f"--source={self.source}", "--host", "127.0.0.1", "--port", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"functions-framework exited:\n{self._log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("functions-framework did not start listening")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        # SIGINT is gunicorn's quick shutdown (on SIGTERM its threaded worker waits
        # out idle keep-alive connections). Even so, the emulator's push client
        # can leave a connection open that a worker thread keeps reading, and the
        # worker cannot exit until that thread does: SIGKILL after a short wait.
        # The server holds no state worth a graceful stop.
        try:
            os.killpg(process.pid, signal.SIGINT)
            process.wait(timeout=1.5)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(timeout=10)

    def __enter__(self) -> FunctionsFramework:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
