"""What every Pub/Sub subscriber shares: unwrap the message, drop poison and stale ones, log context."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from datetime import datetime, timezone

import flask
import functions_framework
from cloudevents.http import CloudEvent

from shared import bootstrap
from shared import log as logctx
from shared import trace as tracing
from shared.domain.jsonsafe import loads_guarded
from shared.domain.messages import Payload
from shared.errors import ConfigError, PermanentError, TransientError

log = logging.getLogger("functions")


def subscriber(name: str, payload_type: type[Payload]) -> Callable[[CloudEvent], None]:
    """The CloudEvent function `name`: unwrap the Pub/Sub message into a `payload_type` and hand it
    to `bootstrap.handle`.

    Unparseable messages and those older than MAX_MESSAGE_AGE that may expire (late
    reminders; never a refund request or an event) are logged and acknowledged (returning
    normally), so Pub/Sub does not redeliver them forever; a TransientError propagates, so
    the platform retries, as does a ConfigError (a setting the message's adapter needs).
    """
    logctx.configure()

    def entry(event: CloudEvent) -> None:
        with logctx.bound(function=name, event_id=logctx.identifier(event.get("id"))):
            try:
                payload, attributes, published = _unwrap(event, payload_type)
            except (PermanentError, ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
                log.error("unparseable message acknowledged: %s", type(exc).__name__)
                return
            request_id = logctx.identifier(attributes.get("request_id")) or None
            logctx.bind(order_id=logctx.identifier(attributes.get("order_id")), request_id=request_id)
            with tracing.activated(tracing.continued(attributes)):  # the order's trace, from its message
                _handle(payload, published, request_id)

    entry.__name__ = entry.__qualname__ = name
    _SUBSCRIBERS.add(name)
    return functions_framework.cloud_event(entry)


def _handle(payload: Payload, published: datetime | None, request_id: str | None) -> None:
    """The message's use case, its outcome logged (and its failures mapped, see `subscriber`)."""
    settings = bootstrap.settings()
    if (payload.may_expire and published
            and datetime.now(timezone.utc) - published > settings.events.max_message_age):
        log.warning("message older than MAX_MESSAGE_AGE dropped")
        return
    try:
        outcome = bootstrap.handle(payload, request_id=request_id)
    except TransientError as exc:
        log.warning("transient failure, Pub/Sub will retry: %s", exc)
        raise
    except ConfigError as exc:
        # A setting this message needs is wrong (found when its adapter is first built):
        # the message is fine, so it waits for the fix (or the dead-letter topic).
        log.error("misconfigured, Pub/Sub will retry: %s", exc)
        raise
    except PermanentError as exc:
        log.error("permanent failure acknowledged: %s", exc)
        return
    except Exception:
        # A message no handler can take (a poison value past the parser): retrying
        # cannot help. What it should have caused is re-driven by the sweeper.
        log.exception("message could not be handled; acknowledged")
        return
    log.info("handled: %s", outcome)


_SUBSCRIBERS: set[str] = set()


def _acknowledge_unreadable(app: flask.Flask, **_: object) -> None:
    """Before functions-framework parses a subscriber's request: a body its JSON parser would
    choke on (nesting deep enough for a RecursionError, numbers long enough for a ValueError,
    neither of which it catches) is poison. Acknowledge it (2xx, so it is not redelivered
    forever) with a log line, as `entry` does for any other unparseable message."""
    if app.name not in _SUBSCRIBERS or flask.request.method != "POST":
        return
    try:
        loads_guarded(flask.request.get_data())
    except PermanentError as exc:
        with logctx.bound(function=app.name):
            log.error("unparseable message acknowledged: %s", type(exc).__name__)
        flask.abort(flask.Response(status=204))


# Sent for every request of every app in the process; functions-framework builds one app per
# target, named after it.
flask.request_started.connect(_acknowledge_unreadable, weak=False)


def _unwrap(event: CloudEvent, payload_type: type[Payload]) -> tuple[Payload, dict, datetime | None]:
    """The payload, attributes and publish time of a Pub/Sub CloudEvent; raises on any malformation."""
    data = event.data
    if not isinstance(data, dict) or not isinstance(data.get("message"), dict):
        raise TypeError("no Pub/Sub message")
    message = data["message"]
    attributes = message.get("attributes") or {}
    if not isinstance(attributes, dict) or not all(isinstance(v, str) for v in attributes.values()):
        raise TypeError("attributes must be a map of strings")
    raw = message.get("data")
    if not isinstance(raw, str):
        raise TypeError("data must be base64 text")
    payload = payload_type.from_dict(loads_guarded(base64.b64decode(raw, validate=True), where="message.data"))
    return payload, attributes, _published_at(message.get("publishTime"))


def _published_at(value: object) -> datetime | None:
    if not value:
        return None
    if not isinstance(value, str):
        raise TypeError("publishTime must be text")
    published = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if published.tzinfo is None:
        raise ValueError("publishTime without a zone")
    return published
