"""`/health`: one cheap round trip to each dependency, naming what fails."""

from __future__ import annotations

import logging
from collections.abc import Callable
from enum import StrEnum

from shared.db import health as health_numbers
from shared.db.database import Database
from shared.db.unit_of_work import UnitOfWork
from shared.errors import ServiceError

log = logging.getLogger(__name__)


class Health(StrEnum):
    OK = "ok"
    FAILING = "failing"


def check(container_factory: Callable, *, include_queue: bool = False) -> tuple[int, dict]:
    checks: dict[str, Health] = {}
    try:
        c = container_factory()
        c.db.ping()
        checks["database"] = Health.OK
    except ServiceError as exc:
        log.warning("health: database failing: %s", exc)
        checks["database"] = Health.FAILING
        c = None
    if include_queue and c is not None:
        try:
            c.scheduler.check()
            checks["queue"] = Health.OK
        except ServiceError as exc:
            log.warning("health: queue failing: %s", exc)
            checks["queue"] = Health.FAILING
    failing = sorted(name for name, state in checks.items() if state is not Health.OK)
    if failing:
        return 503, {"status": "unavailable", "failing": failing, "checks": checks}
    return 200, {"status": "ok", "checks": checks}


def record_sweep(db: Database, *, finished_at, seconds: float, report: dict[str, int | float]) -> None:
    """A sweep's run, for the System page's "last sweep" (`sweep_runs`)."""
    with UnitOfWork(db) as uow:
        health_numbers.record_sweep(uow.conn, finished_at=finished_at, seconds=seconds, report=report)
        uow.commit()
