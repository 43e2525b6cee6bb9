"""`sweep`: every minute from Cloud Scheduler — expire sessions whose timer was lost, re-drive lost
work, erase or delete what is past its retention (bounded batches), and relay what is due (the
dispatcher decides: `bootstrap.sweep`). Also the deep `/health` (database and queue), behind IAM: the public
intake answers only `/healthz`, which does no I/O."""

from __future__ import annotations

import logging
import time

import flask

from functions._http import MethodNotAllowed, NotFound, http_entry
from shared import bootstrap
from shared.db import health as health_numbers
from shared.handlers import health, redrive, retention, timers

NAME = "sweep"
bootstrap.check_at_start(NAME)
log = logging.getLogger("functions.sweep")
# The every-run line for the alerts: a logger of its own, so the local stack's console
# (devstack/console.py tells only functions.sweep's INFO lines) stays quiet when idle.
metrics_log = logging.getLogger("functions.sweep.metrics")


@http_entry(NAME)
def sweep(request: flask.Request, request_id: str) -> tuple[int, dict]:
    # What Cloud Scheduler sends (POST /) and the deep health check (GET /health); nothing else
    # runs a sweep (a GET, PUT or HEAD to any path did).
    path = request.path.rstrip("/") or "/"
    if path == "/health":
        if request.method != "GET":
            raise MethodNotAllowed("use GET")
        return health.check(bootstrap.container, include_queue=True)
    if path != "/":
        raise NotFound(f"no route {path}")
    if request.method != "POST":
        raise MethodNotAllowed("use POST")
    c = bootstrap.container()
    started = time.monotonic()
    now = c.clock.now()
    (expiry, redriven, purged), report = bootstrap.sweep(lambda c: _work(c, now))
    counts = {"expired": expiry.expired, "expiryFailures": expiry.failed, "redriven": redriven,
              "relayed": report.delivered, "relayFailures": report.failed, "deadLetters": report.dead,
              "purged": sum(purged.values())}
    if any(counts.values()):
        did = ", ".join(f"{k} {v}" for k, v in counts.items() if v)
        log.info("sweep: %s", did, extra={"labels": {k: str(v) for k, v in counts.items()}})
    with c.db.read() as conn:
        backlog = health_numbers.outbox_backlog(conn)
    # Every run, for the alerts (infra/monitoring/): `sweep_runs` (its absence pages),
    # `outbox_backlog` and `outbox_oldest_age` read the numbers from this line.
    metrics_log.info("sweep done: %d undelivered outbox rows, the oldest %.0f s old, %d parked",
             backlog.undelivered, backlog.oldest_seconds, backlog.parked,
             extra={"labels": {"event": "sweep.completed", "outbox_backlog": str(backlog.undelivered),
                               "outbox_oldest_seconds": f"{backlog.oldest_seconds:.1f}",
                               "outbox_parked": str(backlog.parked)}})
    _record(c, seconds=time.monotonic() - started,
            report={**counts, "outboxBacklog": backlog.undelivered,
                    "outboxOldestSeconds": round(backlog.oldest_seconds, 1), "outboxParked": backlog.parked})
    return 200, {"status": "ok", **counts, "purgedByKind": purged}


def _work(c, now):
    """Expire what is overdue, re-drive lost work, erase or delete what is past its retention;
    the dispatcher (`bootstrap.sweep`) then relays what is due."""
    expiry = timers.expire_overdue(c.db, now=now, grace=c.settings.lifecycle.sweep_grace, stores=c.stores)
    redriven = redrive.redrive_lost_work(c.db, c.settings, now=now)
    purged = retention.purge(c.db, c.settings, now=now, stores=c.stores)
    return expiry, redriven, purged


def _record(c, *, seconds: float, report: dict[str, int | float]) -> None:
    """The run, for the System page's "last sweep" (`sweep_runs`). Never fails the sweep: its work
    is done; a failure to record it is logged (its class only) and the sweep answers as before."""
    try:
        health.record_sweep(c.db, finished_at=c.clock.now(), seconds=seconds, report=report)
    except Exception as error:  # noqa: BLE001 - recording is best effort by design
        log.warning("sweep: its run was not recorded (%s)", type(error).__name__,
                    extra={"labels": {"event": "sweep.record_failed", "error_class": type(error).__name__}})
