"""`sweep`: every minute from Cloud Scheduler — relay what is due, expire sessions whose timer was lost."""

from __future__ import annotations

import logging

import flask

from functions._http import http_entry
from shared import bootstrap
from shared.handlers import timers

NAME = "sweep"
bootstrap.check_at_start(NAME)
log = logging.getLogger("functions.sweep")


@http_entry(NAME)
def sweep(request: flask.Request, request_id: str) -> tuple[int, dict]:
    c = bootstrap.container()
    expired = timers.expire_overdue(c.db, now=c.clock.now(), grace=c.settings.sweep_grace)
    report = c.relay(budget_seconds=20.0)
    counts = {"expired": expired, "relayed": report.delivered, "relayFailures": report.failed,
              "deadLetters": report.dead}
    log.info("sweep done", extra={"labels": {k: str(v) for k, v in counts.items()}})
    return 200, {"status": "ok", **counts}
