"""`/health`: one cheap round trip to each dependency, naming what fails."""

from __future__ import annotations

import logging
from collections.abc import Callable
from enum import StrEnum

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
