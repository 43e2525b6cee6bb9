"""Fixtures for the task-scheduler tests; import the ones a module uses.

- `cloud_tasks_emulator` (session): a Cloud Tasks emulator on 127.0.0.1,
  yields "127.0.0.1:PORT", always stopped at the end.
- `http_target`: a RecordingTarget on 127.0.0.1 for one test.
- `tasks_db` (session): a Database on a private database of the session's
  PostgreSQL, so dispatchers in these tests deliver only these tests' rows
  (the shared database may hold other tests' due tasks). `local_tasks` is
  emptied before each test that asks for `clean_tasks_db`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from devstack import task_dispatcher
from devstack.task_dispatcher import TaskDispatcher
from shared.db.database import Database
from shared.db.engine import make_engine
from shared.db.migrate import ensure_schema
from tests.emulators.cloud_tasks import CloudTasksEmulator, emulator_python
from tests.emulators.http_target import RecordingTarget


@pytest.fixture(scope="session")
def cloud_tasks_emulator(tmp_path_factory) -> Iterator[str]:
    emulator = CloudTasksEmulator(emulator_python(), tmp_path_factory.mktemp("tasks-emulator"))
    try:
        yield emulator.start()
    finally:
        emulator.stop()


@pytest.fixture
def http_target() -> Iterator[RecordingTarget]:
    with RecordingTarget() as target:
        yield target


@pytest.fixture(scope="session")
def tasks_db(settings, db) -> Iterator[Database]:
    name = f"local_tasks_{uuid.uuid4().hex[:12]}"
    with db.read() as conn:  # autocommit: CREATE DATABASE cannot run in a transaction
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(settings.database.url).set(database=name).render_as_string(hide_password=False)
    private = Database(make_engine(dataclasses.replace(settings.database, url=url)))
    try:
        ensure_schema(private)
        yield private
    finally:
        private.engine.dispose()
        with db.read() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def clean_tasks_db(tasks_db) -> Database:
    with tasks_db.read() as conn:
        conn.execute(text("TRUNCATE local_tasks"))
    return tasks_db


class _Crashes(logging.Handler):
    """Collects the tracebacks run_forever logs and survives (it must not hide bugs from tests)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)


@contextlib.contextmanager
def dispatching(*dispatchers: TaskDispatcher) -> Iterator[None]:
    """Run each dispatcher's `run_forever` in its own thread for the block; stop and close them.

    Fails the test if a dispatcher thread hit an unexpected exception.
    """
    crashes = _Crashes()
    dispatcher_log = logging.getLogger(task_dispatcher.__name__)
    dispatcher_log.addHandler(crashes)
    stop = threading.Event()
    threads = [threading.Thread(target=d.run_forever, args=(stop,), daemon=True) for d in dispatchers]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        for dispatcher in dispatchers:
            dispatcher.close()
        dispatcher_log.removeHandler(crashes)
    assert not crashes.records, "dispatcher crashed: " + "; ".join(
        logging.Formatter().format(r) for r in crashes.records)


def wait_until(condition: Callable[[], bool], timeout: float = 30.0, interval: float = 0.05) -> bool:
    """Poll `condition` until true or the timeout; the last answer."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
