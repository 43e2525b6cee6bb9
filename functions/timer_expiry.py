"""`timer_expiry`: Cloud Tasks deliveries of reminder and deadline timers. Cloud Run's IAM checks
the OIDC token before a request reaches this code (--no-allow-unauthenticated): no check here."""

from __future__ import annotations

import logging

import flask

from functions._http import MethodNotAllowed, NotFound, http_entry
from shared import bootstrap
from shared import log as logctx
from shared.domain.jsonsafe import loads_guarded
from shared.domain.messages import TimerPayload
from shared.errors import PermanentError

NAME = "timer_expiry"
bootstrap.check_at_start(NAME)
log = logging.getLogger("functions.timer_expiry")


@http_entry(NAME)
def timer_expiry(request: flask.Request, request_id: str) -> tuple[int, dict]:
    if (request.path.rstrip("/") or "/") != "/":  # Cloud Tasks POSTs to TIMER_URL, the function's root
        raise NotFound("no such route")
    if request.method != "POST":
        raise MethodNotAllowed("use POST")
    logctx.bind(task=logctx.identifier(request.headers.get("X-CloudTasks-TaskName")),
                retry_count=logctx.identifier(request.headers.get("X-CloudTasks-TaskRetryCount", "0")))
    try:
        timer = TimerPayload.from_dict(loads_guarded(request.get_data()))
    except (ValueError, TypeError, RecursionError, PermanentError) as exc:
        # A poison task: acknowledge it so Cloud Tasks does not retry it forever. The class
        # and field only: the error text may quote the input.
        log.error("malformed timer payload acknowledged: %s (field %s)", type(exc).__name__,
                  getattr(exc, "field", None) or "-")
        return 200, {"status": "ignored", "detail": "malformed timer payload"}
    logctx.bind(order_id=timer.order_id, timer=timer.kind)
    result = bootstrap.handle(timer, request_id=request_id)
    log.info("timer %s: %s", timer.kind, result.status)
    return 200, result.to_dict()
