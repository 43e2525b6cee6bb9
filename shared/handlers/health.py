"""`/health`: one cheap round trip to each dependency, naming what fails."""

from __future__ import annotations

import logging
from collections.abc import Callable

from shared.errors import ServiceError

log = logging.getLogger(__name__)


def check(container_factory: Callable, *, include_queue: bool = False) -> tuple[int, dict]:
    checks: dict[str, str] = {}
    try:
        c = container_factory()
        c.db.ping()
        checks["database"] = "ok"
    except ServiceError as exc:
        log.warning("health: database failing: %s", exc)
        checks["database"] = "failing"
        c = None
    if include_queue and c is not None:
        try:
            c.scheduler.check()
            checks["queue"] = "ok"
        except ServiceError as exc:
            log.warning("health: queue failing: %s", exc)
            checks["queue"] = "failing"
    failing = sorted(name for name, state in checks.items() if state != "ok")
    if failing:
        return 503, {"status": "unavailable", "failing": failing, "checks": checks}
    return 200, {"status": "ok", "checks": checks}
