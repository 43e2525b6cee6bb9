"""What every Pub/Sub subscriber shares: unwrap the message, drop poison and stale ones, log context."""

from __future__ import annotations

import base64
import functools
import json
import logging
from collections.abc import Callable
from datetime import datetime, timezone

from cloudevents.http import CloudEvent

from shared import bootstrap
from shared import log as logctx
from shared.domain.messages import Payload
from shared.errors import PermanentError, TransientError

log = logging.getLogger("functions")


def subscriber(name: str, payload_type: type[Payload]) -> Callable:
    """Wrap a handler `(payload) -> outcome str` as a CloudEvent function.

    Unparseable messages and those older than MAX_MESSAGE_AGE that may expire (late
    reminders; never a refund request or an event) are logged and
    acknowledged (returning normally), so Pub/Sub does not redeliver them
    forever; a TransientError propagates, so the platform retries.
    """
    logctx.configure()

    def decorate(handler: Callable[[Payload], str]) -> Callable[[CloudEvent], None]:
        @functools.wraps(handler)
        def entry(event: CloudEvent) -> None:
            with logctx.bound(function=name, event_id=event["id"]):
                try:
                    message = (event.data or {})["message"]
                    attributes = message.get("attributes") or {}
                    data = json.loads(base64.b64decode(message["data"]))
                    payload = payload_type.from_dict(data)
                    published = _published_at(message.get("publishTime"))
                except (KeyError, TypeError, ValueError, PermanentError) as exc:
                    log.error("unparseable message acknowledged: %s", type(exc).__name__)
                    return
                logctx.bind(order_id=attributes.get("order_id"), request_id=attributes.get("request_id") or None)
                settings = bootstrap.settings()
                if (payload.may_expire and published
                        and datetime.now(timezone.utc) - published > settings.max_message_age):
                    log.warning("message older than MAX_MESSAGE_AGE dropped")
                    return
                try:
                    outcome = handler(payload)
                except TransientError as exc:
                    log.warning("transient failure, Pub/Sub will retry: %s", exc)
                    raise
                except PermanentError as exc:
                    log.error("permanent failure acknowledged: %s", exc)
                    return
                log.info("handled: %s", outcome)

        return entry

    return decorate


def _published_at(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
