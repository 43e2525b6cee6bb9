"""`webhook_intake`: store order webhooks, Veriff decisions, health checks."""

from __future__ import annotations

import hmac

import flask

from functions._http import http_entry
from shared import bootstrap, inbound
from shared import log as logctx
from shared.errors import BadSignature, BodyTooLarge, PermanentError, RouteDisabled, WrongContentType
from shared.handlers import health, intake
from shared.handlers.intake import Result

NAME = "webhook_intake"
REQUIRED = ("ORDER_WEBHOOK_SECRET", "VERIFF_SHARED_SECRET")
bootstrap.check_at_start(NAME, *REQUIRED)


class NotFound(PermanentError):
    status = 404
    code = "not_found"


class MethodNotAllowed(PermanentError):
    status = 405
    code = "method_not_allowed"


def _body(request: flask.Request, content_type: str, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge(f"body is over {limit} bytes")
    if request.mimetype != content_type:
        raise WrongContentType(f"expected {content_type}")
    body = request.stream.read(limit + 1)
    if len(body) > limit:
        raise BodyTooLarge(f"body is over {limit} bytes")
    return body


def _orders(request: flask.Request, request_id: str) -> Result:
    settings = bootstrap.settings()
    body = _body(request, "application/json", settings.max_body_bytes)
    c = bootstrap.container()
    now = c.clock.now()
    event_id = inbound.verify_standard_webhook(settings.order_webhook_secret, request.headers, body, now)
    command = inbound.parse_order_webhook(event_id, body)
    if command is None:
        return Result("ignored", detail="event is not order.created")
    logctx.bind(order_id=command.order_id)
    return intake.place_order(c.db, c.settings, command, now=now, request_id=request_id)


def _lightspeed(request: flask.Request, request_id: str) -> Result:
    settings = bootstrap.settings()
    if not settings.lightspeed_client_secret:
        raise RouteDisabled("Lightspeed route disabled: LIGHTSPEED_CLIENT_SECRET is not set")
    body = _body(request, "application/x-www-form-urlencoded", settings.max_body_bytes)
    inbound.verify_lightspeed(settings.lightspeed_client_secret, request.headers.get("X-Signature"), body)
    command = inbound.parse_lightspeed(body)
    if command is None:
        return Result("ignored", detail="sale is neither paid nor voided")
    logctx.bind(order_id=command.order_id)
    c = bootstrap.container()
    return intake.handle(c.db, c.settings, command, now=c.clock.now(), request_id=request_id)


def _veriff(request: flask.Request, request_id: str) -> Result:
    settings = bootstrap.settings()
    body = _body(request, "application/json", settings.max_body_bytes)
    inbound.verify_veriff(settings.veriff_shared_secret, request.headers.get("X-HMAC-SIGNATURE"), body)
    client = request.headers.get("X-AUTH-CLIENT", "")
    if settings.veriff_api_key and not hmac.compare_digest(client.encode(), settings.veriff_api_key.encode()):
        raise BadSignature("X-AUTH-CLIENT does not match the API key")
    command = inbound.parse_veriff(body)
    logctx.bind(order_id=command.order_id)
    c = bootstrap.container()
    return intake.handle(c.db, c.settings, command, now=c.clock.now(), request_id=request_id)


_ROUTES = {
    "/webhooks/orders": _orders,
    "/webhooks/lightspeed": _lightspeed,
    "/webhooks/veriff": _veriff,
}


@http_entry(NAME)
def webhook_intake(request: flask.Request, request_id: str) -> tuple[int, dict]:
    bootstrap.settings_for(NAME, *REQUIRED)
    path = request.path.rstrip("/") or "/"
    if path == "/healthz":
        return 200, {"status": "ok"}
    if path == "/health":
        return health.check(bootstrap.container, include_queue=True)
    route = _ROUTES.get(path)
    if route is None:
        raise NotFound(f"no route {path}")
    if request.method != "POST":
        raise MethodNotAllowed("use POST")
    result = route(request, request_id)
    if result.status != "duplicate" and result.order_id:
        bootstrap.container().relay([result.order_id])
    return 200, result.to_dict()
