"""The composition root builds the real clients from settings: Cloud Tasks queue ensured on first use."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from shared.ports import Outcome, TimerTask
from shared.adapters.tasks import CloudTasksScheduler
from shared.bootstrap import Container
from shared.config import Settings
from tests.conftest import base_env


def test_cloud_scheduler_from_settings_ensures_its_queue(cloud_tasks_emulator, db, database_url):
    queue = f"wiring-{uuid.uuid4().hex[:8]}"
    settings = Settings.from_env(base_env(database_url, TASKS_BACKEND="cloud", GOOGLE_CLOUD_PROJECT="wiring-test",
                                          TASKS_QUEUE=queue, TIMER_URL="http://127.0.0.1:9/timer",
                                          CLOUD_TASKS_EMULATOR_HOST=cloud_tasks_emulator))
    container = Container(settings=settings, db=db)
    scheduler = container.scheduler
    assert isinstance(scheduler, CloudTasksScheduler)
    scheduler.check()  # the queue exists now: GetQueue answers
    assert scheduler.ensure_queue() is Outcome.ALREADY_EXISTS
    task = TimerTask(f"t-{uuid.uuid4().hex}", datetime.now(timezone.utc) + timedelta(hours=1), {"v": 1})
    assert scheduler.create(task) is Outcome.CREATED
    assert scheduler.delete(task.name) is Outcome.DELETED
