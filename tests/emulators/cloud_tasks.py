"""The Cloud Tasks emulator: its own virtual environment and its process.

gcloud-tasks-emulator pins protobuf<5, which the project's client cannot use,
so it lives in .local/tasks-emulator-venv (git-ignored), created on first use
and reused while tasks-emulator-requirements.txt is unchanged. It runs through
tasks_emulator_launcher.py (loopback only, plus the calls it lacks).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
VENV = ROOT / ".local" / "tasks-emulator-venv"
REQUIREMENTS = HERE / "tasks-emulator-requirements.txt"
LAUNCHER = HERE / "tasks_emulator_launcher.py"

# Deliveries from the emulator go through urllib, which honours these: they
# must never route a loopback delivery through a proxy.
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "grpc_proxy")


def emulator_python() -> Path:
    """The emulator venv's interpreter, building the venv first when missing or stale."""
    want = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    python = VENV / "bin" / "python"
    stamp = VENV / ".requirements.sha256"
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(VENV.parent / "tasks-emulator-venv.lock", "w") as lock:
        # Two test runs at once must not build the same venv together.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if python.exists() and stamp.exists() and stamp.read_text().strip() == want:
            return python
        shutil.rmtree(VENV, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "-r", str(REQUIREMENTS)],
            check=True,
        )
        subprocess.run([str(python), "-c", "import gcloud_tasks_emulator.server"], check=True)
        stamp.write_text(want + "\n")
    return python


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in _PROXY_VARIABLES and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["NO_PROXY"] = env["no_proxy"] = "*"
    return env


class CloudTasksEmulator:
    """One emulator process on 127.0.0.1; `start()` returns "127.0.0.1:PORT"."""

    def __init__(self, python: Path, work_dir: Path, *, max_retries: int = -1) -> None:
        self.python = python
        self.work_dir = work_dir
        self.max_retries = max_retries
        self.host: str | None = None
        self._process: subprocess.Popen | None = None

    @property
    def log_path(self) -> Path:
        return self.work_dir / "emulator.log"

    def start(self, timeout: float = 60.0) -> str:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        ready = self.work_dir / "ready"
        ready.unlink(missing_ok=True)
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                [str(self.python), str(LAUNCHER), "--ready-file", str(ready),
                 "--port", "0", "--max-retries", str(self.max_retries)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=_clean_env(), cwd=self.work_dir,
            )
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Cloud Tasks emulator did not start:\n{self.log_tail()}")
            time.sleep(0.05)
        self.host = ready.read_text().strip()
        # Serving means a gRPC channel to it becomes ready.
        with grpc.insecure_channel(self.host, options=[("grpc.enable_http_proxy", 0)]) as channel:
            grpc.channel_ready_future(channel).result(timeout=max(deadline - time.monotonic(), 1))
        return self.host

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@contextlib.contextmanager
def running_emulator(work_dir: Path, **kwargs) -> Iterator[CloudTasksEmulator]:
    """Start an emulator for the block and always stop it."""
    emulator = CloudTasksEmulator(emulator_python(), work_dir, **kwargs)
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()
