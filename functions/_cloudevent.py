"""What every Pub/Sub subscriber shares: unwrap the message, drop poison and stale ones, log context."""

from __future__ import annotations

import base64
import functools
import json
import logging
import re
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

    Unparseable messages and messages older than MAX_MESSAGE_AGE are logged and
    acknowledged (returning normally), so Pub/Sub does not redeliver them
    forever; a TransientError propagates, so the platform retries.
    """
    logctx.configure()

    def decorate(handler: Callable[[Payload], str]) -> Callable[[CloudEvent], None]:
        @functools.wraps(handler)
        def entry(event: CloudEvent) -> None:
            with logctx.bound(function=name, event_id=_identifier(event.get("id"))):
                try:
                    payload, attributes, published = _unwrap(event, payload_type)
                except (PermanentError, ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
                    log.error("unparseable message acknowledged: %s", type(exc).__name__)
                    return
                logctx.bind(order_id=_identifier(attributes.get("order_id")),
                            request_id=_identifier(attributes.get("request_id")) or None)
                settings = bootstrap.settings()
                if published and datetime.now(timezone.utc) - published > settings.max_message_age:
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
                except Exception:
                    # A message no handler can take (a poison value past the parser): retrying
                    # cannot help. What it should have caused is re-driven by the sweeper.
                    log.exception("message could not be handled; acknowledged")
                    return
                log.info("handled: %s", outcome)

        return entry

    return decorate


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
    payload = payload_type.from_dict(json.loads(base64.b64decode(raw, validate=True)))
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


_IDENTIFIER = re.compile(r"[A-Za-z0-9._:\-]{1,200}")


def _identifier(value: object) -> str | None:
    """A value fit for a log label (an id), else None: labels never echo arbitrary input."""
    return value if isinstance(value, str) and _IDENTIFIER.fullmatch(value) else None
