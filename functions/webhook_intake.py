"""`webhook_intake` (public): store order webhooks, ID providers' decisions and events, and `/healthz`
(no I/O). The deep `/health` is the private sweep function's, so no stranger can make the
intake call its database or queue. It answers once the input is committed; the instance's
relay thread delivers the outbox rows after the answer (`shared/handlers/relay_after.py`),
or, with INTAKE_RELAY=in_request, the request does before it answers."""

from __future__ import annotations

import flask

from functions._http import MethodNotAllowed, NotFound, http_entry, read_body
from shared import bootstrap, inbound
from shared import log as logctx
from shared.config import IntakeRelay
from shared.ports import SystemClock

NAME = "webhook_intake"
# ID_PROVIDER: the chosen ID provider's webhook secrets (`shared.providers.registry`).
REQUIRED = ("ORDER_WEBHOOK_SECRET", "ID_PROVIDER", "CUSTOMER_KEY_SECRET")
bootstrap.check_at_start(NAME, *REQUIRED)


def route(request: flask.Request) -> str:
    """The route a request's answer is counted under: a source's path, /healthz, or other."""
    path = request.path.rstrip("/") or "/"
    return path if path in inbound.sources() or path == "/healthz" else "other"


@http_entry(NAME, route_of=route)
def webhook_intake(request: flask.Request, request_id: str) -> tuple[int, dict]:
    settings = bootstrap.settings_for(NAME, *REQUIRED)
    path = request.path.rstrip("/") or "/"
    if path == "/healthz":
        return 200, {"status": "ok"}
    source = inbound.source_for(path, settings.inbound)
    if source is None:
        raise NotFound(f"no route {path}")
    if request.method != "POST":
        raise MethodNotAllowed("use POST")
    body = read_body(request, source.content_type, settings.inbound.max_body_bytes)
    # The signature first, on the system clock: an unsigned request never builds the pool or
    # runs the schema check (a stranger cannot make a cold instance touch the database).
    delivery_id = source.verify(request.headers, body, SystemClock().now())
    command = source.parse(body, delivery_id, request.headers)
    if command is None:
        return 200, {"status": "ignored", "detail": "nothing to do for this delivery"}
    logctx.bind(order_id=command.order_id)
    return 200, bootstrap.handle(command, request_id=request_id,
                                  relay_after_response=settings.inbound.relay == IntakeRelay.AFTER_RESPONSE).to_dict()
