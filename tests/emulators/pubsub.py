"""Google's Pub/Sub emulator on 127.0.0.1, for integration tests and benches.

`PubSubEmulator` starts and stops one emulator process (tests and `bench/`
share it); `pubsub_emulator` is the session fixture around it, and `pubsub_env`
points the Google client at it for one test only (PUBSUB_EMULATOR_HOST is read
by the library when a client is built).

Use the fixtures by importing them into a test module, or register this
module once with `pytest_plugins = ["tests.emulators.pubsub"]` in
tests/conftest.py so that all modules share one emulator.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

PROJECT = "test-project"
SDK_ROOTS = (Path("/usr/lib/google-cloud-sdk"), Path("/usr/share/google-cloud-sdk"),
             Path("/opt/google-cloud-sdk"))
LAUNCHER = Path("platform/pubsub-emulator/bin/cloud-pubsub-emulator")


class EmulatorUnavailable(RuntimeError):
    """The emulator (or the Java it needs) is not installed on this machine."""


def free_port() -> int:
    """A port nothing listens on right now, on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _sdk_roots() -> list[Path]:
    roots = []
    gcloud = shutil.which("gcloud")
    if gcloud:
        roots.append(Path(gcloud).resolve().parent.parent)  # <root>/bin/gcloud
    roots.extend(SDK_ROOTS)
    return roots


def emulator_command(port: int, data_dir: Path, project: str = PROJECT) -> list[str]:
    """The command that starts the emulator on 127.0.0.1:`port`.

    Prefers the emulator's own launcher (no gcloud start-up, one process
    fewer), falls back to `gcloud beta emulators pubsub start`. Raises
    EmulatorUnavailable naming what is missing.
    """
    if not shutil.which("java"):
        raise EmulatorUnavailable("the Pub/Sub emulator needs Java (java not on PATH)")
    explicit = os.environ.get("PUBSUB_EMULATOR_LAUNCHER")
    candidates = [Path(explicit)] if explicit else [root / LAUNCHER for root in _sdk_roots()]
    for launcher in candidates:
        if launcher.is_file() and os.access(launcher, os.X_OK):
            return [str(launcher), "--host=127.0.0.1", f"--port={port}"]
    if shutil.which("gcloud"):
        return ["gcloud", "beta", "emulators", "pubsub", "start",
                f"--host-port=127.0.0.1:{port}", f"--project={project}",
                f"--data-dir={data_dir}"]
    raise EmulatorUnavailable(
        "Pub/Sub emulator not found: install the Cloud SDK component "
        "(`gcloud components install pubsub-emulator beta`, or the "
        "google-cloud-cli-pubsub-emulator package), or set PUBSUB_EMULATOR_LAUNCHER")


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PubSubEmulator:
    """One emulator process in its own process group; `start()`, then `stop()`."""

    def __init__(self, project: str = PROJECT, port: int | None = None) -> None:
        self.project = project
        self._fixed_port = port
        self.port = port or 0
        self._process: subprocess.Popen | None = None
        self._workdir: Path | None = None

    @property
    def host(self) -> str:
        """`127.0.0.1:PORT`, the value for PUBSUB_EMULATOR_HOST."""
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path | None:
        return self._workdir / "emulator.log" if self._workdir else None

    def start(self, timeout: float = 90.0) -> PubSubEmulator:
        """Start and wait until it answers; RuntimeError (with its log) if it cannot."""
        self._workdir = Path(tempfile.mkdtemp(prefix="pubsub-emulator-"))
        # A chosen free port can be taken before Java binds it: try a few.
        tries = 1 if self._fixed_port else 3
        for attempt in range(tries):
            self.port = self._fixed_port or free_port()
            self._spawn()
            try:
                self._wait_ready(timeout)
                return self
            except RuntimeError:
                exited = self._process is not None and self._process.poll() is not None
                if not exited or attempt == tries - 1:
                    self.stop()
                    raise
                self._kill()
        raise AssertionError("unreachable")

    def _spawn(self) -> None:
        assert self._workdir is not None
        config_dir = self._workdir / "gcloud-config"
        config_dir.mkdir(exist_ok=True)
        data_dir = self._workdir / "data"
        data_dir.mkdir(exist_ok=True)
        env = dict(os.environ)
        env.update({
            "NO_GCE_CHECK": "true",
            "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
            "CLOUDSDK_CONFIG": str(config_dir),
            # Keep gcloud from calling out to check for component updates.
            "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "true",
        })
        env.pop("PUBSUB_EMULATOR_HOST", None)
        command = emulator_command(self.port, data_dir, self.project)
        with open(self._workdir / "emulator.log", "ab") as log_file:
            self._process = subprocess.Popen(
                command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, cwd=self._workdir, start_new_session=True,
            )

    def _wait_ready(self, timeout: float) -> None:
        # The emulator answers `GET /` with "Ok" once its server is listening.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"Pub/Sub emulator exited with {self._process.returncode}:\n"
                                   f"{self.log_tail()}")
            try:
                with opener.open(f"http://{self.host}/", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"Pub/Sub emulator not ready after {timeout}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        path = self.log_path
        if not path or not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        # gcloud starts Java as a child, which can outlive it by a moment: signal
        # the whole group we created and wait until no member is left.
        group = process.pid
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(group, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and _group_alive(group):
                process.poll()  # reap our direct child so it does not linger as a zombie
                time.sleep(0.05)
            if not _group_alive(group):
                break
        process.wait(timeout=10)

    def stop(self) -> None:
        """Stop the process group and remove the working folder. Safe to call twice."""
        self._kill()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> PubSubEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


_session: dict = {"users": 0}


@pytest.fixture(scope="session")
def pubsub_emulator() -> Iterator[str]:
    """A Pub/Sub emulator for the session; yields its host `127.0.0.1:PORT`.

    Skips when the emulator or Java is not installed; fails when it is
    installed but does not start. Does not set PUBSUB_EMULATOR_HOST: use
    `pubsub_env` for that, so it is set only during the tests that need it.
    """
    try:
        emulator_command(0, Path(tempfile.gettempdir()))
    except EmulatorUnavailable as exc:
        pytest.skip(str(exc))
    # Each test module that imports this fixture gets its own copy of it, so
    # the copies share one process and the last to finish stops it.
    if _session["users"] == 0:
        _session["emulator"] = PubSubEmulator().start()
    _session["users"] += 1
    try:
        yield _session["emulator"].host
    finally:
        _session["users"] -= 1
        if _session["users"] == 0:
            _session.pop("emulator").stop()


@pytest.fixture
def pubsub_env(pubsub_emulator: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """PUBSUB_EMULATOR_HOST set to the session's emulator for this test only."""
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator)
    return pubsub_emulator
