"""Event publishers: Google Cloud Pub/Sub, and a local one that queues Eventarc-shaped
CloudEvents for the local dispatcher to push over HTTP.

`make_publisher(settings.events, db)` picks one by `EVENTS_BACKEND`. Both implement the
`EventPublisher` port: `publish_batch` returns, per message and in order, the
message id or the exception that message failed with; it never raises for a
single message, so the outbox relay can mark what was delivered and leave the
rest for the sweeper.

Neither publisher logs message data or attributes (they can carry order ids
and emails); only topics, counts, message ids and error types.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import TimeoutError as FutureTimeoutError
from datetime import datetime, timedelta, timezone
from typing import Any

from shared.db.local_queue import LocalQueue, QueuedMessage
from shared.ports import EventPublisher, OutgoingMessage
from shared.adapters.tasks import RetryPolicy
from shared.config import EventsBackend, EventsSettings
from shared.db.database import Database
from shared.domain.messages import TOPICS
from shared.errors import ConfigError, TransientError

log = logging.getLogger(__name__)

PUBSUB_EVENT_TYPE = "google.cloud.pubsub.topic.v1.messagePublished"

# `PublisherClient.publish(topic, data, ordering_key=..., retry=..., timeout=...,
# **attrs)`: an attribute with one of these names would be taken as an argument.
_RESERVED_ATTRIBUTE_NAMES = frozenset({"topic", "data", "ordering_key", "retry", "timeout"})


def make_publisher(settings: EventsSettings, db: Database | None = None) -> EventPublisher:
    """The publisher `settings.backend` asks for ("pubsub" or "local")."""
    if settings.backend == EventsBackend.PUBSUB:
        return PubSubPublisher(settings.require("GOOGLE_CLOUD_PROJECT"))
    if settings.backend == EventsBackend.LOCAL:
        return LocalPublisher(
            db, settings.local_subscriber_urls,
            project=settings.project or LocalPublisher.DEFAULT_PROJECT,
        )
    raise ConfigError("EVENTS_BACKEND", f"{settings.backend!r} is not pubsub or local")


class PubSubPublisher:
    """Publishes to Google Cloud Pub/Sub with message ordering.

    The client is built on first use (never at import), so a function that
    never publishes never opens a channel, and `PUBSUB_EMULATOR_HOST` is read
    by the library when the client is built.
    """

    def __init__(self, project: str, *, timeout: float = 30.0, check_timeout: float = 5.0) -> None:
        """`timeout` bounds one `publish_batch` (one attempt per message: no client retries);
        `check_timeout` bounds each call `check()` makes."""
        self.project = project
        self.timeout = timeout
        self.check_timeout = check_timeout
        self._client: Any = None
        self._lock = threading.Lock()

    def topic_path(self, topic: str) -> str:
        return f"projects/{self.project}/topics/{topic}"

    @property
    def client(self):
        """The `PublisherClient`, built once, with ordering enabled."""
        with self._lock:
            if self._client is None:
                self._client = self._build_client()
            return self._client

    def _build_client(self):
        from google.api_core.timeout import ConstantTimeout
        from google.cloud import pubsub_v1
        from google.cloud.pubsub_v1.types import PublisherOptions

        # No retry inside the client. With message ordering on, the library stretches any
        # publish retry it is given to 2**32 s: a failed batch's thread then retried in the
        # background for as long as Pub/Sub was away, one thread per ordering key (an order),
        # after the relay had given up and recorded the failure. One attempt per message,
        # bounded by `timeout` (ConstantTimeout, as the library itself defaults to); a failure
        # leaves the outbox row undelivered, and the relay re-publishes it after its backoff.
        options = PublisherOptions(enable_message_ordering=True, retry=None,
                                   timeout=ConstantTimeout(self.timeout))
        import google.auth.exceptions

        try:
            return pubsub_v1.PublisherClient(publisher_options=options)
        except google.auth.exceptions.DefaultCredentialsError as exc:
            raise ConfigError(
                "EVENTS_BACKEND",
                "Pub/Sub found no Google credentials "
                "(run with a service account, set PUBSUB_EMULATOR_HOST, or EVENTS_BACKEND=local)",
            ) from exc

    def publish_batch(self, messages: Sequence[OutgoingMessage], *,
                      timeout: float | None = None) -> list[str | Exception]:
        """Publish every message, then wait for each (at most `timeout`, or our own bound,
        in all); its id or the error, in order."""
        from google.api_core import exceptions as api_exceptions
        from google.cloud.pubsub_v1.publisher import exceptions as publisher_exceptions

        client = self.client
        pending: list[Any] = []
        for message in messages:
            reserved = _RESERVED_ATTRIBUTE_NAMES.intersection(message.attributes)
            if reserved:
                pending.append(ValueError(f"reserved attribute name(s) {sorted(reserved)}"))
                continue
            try:
                pending.append(client.publish(
                    self.topic_path(message.topic), message.data,
                    ordering_key=message.ordering_key, **message.attributes,
                ))
            except (ValueError, TypeError, RuntimeError) as exc:
                # Rejected before sending (e.g. message too large, stopped client).
                pending.append(exc)

        wait = self.timeout if timeout is None else min(self.timeout, timeout)
        deadline = time.monotonic() + wait
        results: list[str | Exception] = []
        failed_keys: set[tuple[str, str]] = set()
        for message, future in zip(messages, pending):
            if isinstance(future, Exception):
                results.append(future)
                continue
            try:
                results.append(future.result(timeout=max(0.0, deadline - time.monotonic())))
            except FutureTimeoutError:
                # Still in flight: it may yet be delivered, so the relay's later
                # re-publish can duplicate it; subscribers dedupe on message_key.
                results.append(TransientError(
                    f"publish to {message.topic} not confirmed within {wait:.1f}s",
                    component="pubsub"))
            except (api_exceptions.GoogleAPIError,
                    publisher_exceptions.PublishToPausedOrderingKeyException,
                    # The client cancels a key's queued batches (RuntimeError) when an earlier
                    # message of that key fails: e.g. a re-publish behind one still in flight.
                    RuntimeError) as exc:
                error = TransientError(
                    f"publish to {message.topic} failed: {type(exc).__name__}", component="pubsub")
                error.__cause__ = exc
                results.append(error)
                if message.ordering_key:
                    failed_keys.add((message.topic, message.ordering_key))
            except Exception as exc:  # noqa: BLE001 - the port returns, never raises, per message
                results.append(exc)
                if message.ordering_key:
                    failed_keys.add((message.topic, message.ordering_key))

        for topic, ordering_key in failed_keys:
            self._resume(topic, ordering_key)
        failures = sum(isinstance(r, Exception) for r in results)
        if failures:
            log.warning("pubsub publish: %d of %d messages failed", failures, len(results),
                        extra={"labels": {"component": "pubsub"}})
        return results

    def _resume(self, topic: str, ordering_key: str) -> None:
        # After a publish with an ordering key fails, the client pauses that key:
        # every later publish for it fails at once with
        # PublishToPausedOrderingKeyException, so that nothing overtakes the lost
        # message. The outbox keeps the failed rows and re-publishes them in
        # order, so it is safe (and needed) to unpause now; otherwise the key
        # would stay blocked for the life of this instance.
        try:
            self.client.resume_publish(self.topic_path(topic), ordering_key)
        except RuntimeError:
            pass  # not paused (e.g. the failure was a timeout still in flight)

    def check(self, topics: Iterable[str] = TOPICS) -> None:
        """One cheap `get_topic` per topic; TransientError when any cannot be read."""
        from google.api_core import exceptions as api_exceptions

        for topic in topics:
            try:
                self.client.get_topic(topic=self.topic_path(topic), retry=None,
                                      timeout=self.check_timeout)
            except api_exceptions.GoogleAPIError as exc:
                raise TransientError(
                    f"pubsub topic {topic} unavailable: {type(exc).__name__}",
                    component="pubsub") from exc

    def ensure_topics(self, topics: Iterable[str] = TOPICS) -> None:
        """Create the topics that do not exist yet (local stack, tests, emulator)."""
        from google.api_core import exceptions as api_exceptions

        for topic in topics:
            try:
                self.client.create_topic(name=self.topic_path(topic), timeout=self.check_timeout)
            except api_exceptions.AlreadyExists:
                pass
            except api_exceptions.GoogleAPIError as exc:
                raise TransientError(
                    f"cannot create pubsub topic {topic}: {type(exc).__name__}",
                    component="pubsub") from exc

    def close(self) -> None:
        """Flush and stop the client (tests, bench, shutdown). Safe to call twice."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.stop()


# Pub/Sub push's retry, as infra/ configures the subscriptions: exponential backoff from
# 10 s to 600 s, then the dead-letter topic after DEAD_LETTER_MAX_DELIVERY_ATTEMPTS (10).
PUSH_RETRY = RetryPolicy(max_attempts=10, max_retry_duration=timedelta(0), min_backoff=timedelta(seconds=10),
                         max_backoff=timedelta(seconds=600), max_doublings=6)


class LocalPublisher:
    """Local Pub/Sub: `publish_batch` queues each message durably and returns, as Pub/Sub
    does; `devstack.task_dispatcher` then pushes it to the topic's subscriber function as
    Eventarc does (a binary-mode CloudEvent over HTTP), retrying with `PUSH_RETRY` and
    dead-lettering (the row kept, `gave_up`) when the attempts run out. A subscriber that
    fails gets the same message (same id) again, as from Pub/Sub.

    Unlike Pub/Sub with ordering keys, deliveries of one key are not serialised: nothing
    here depends on their order (each subscriber re-reads the session's state).
    """

    DEFAULT_PROJECT = "local-project"

    def __init__(self, db: Database | None, subscriber_urls: Mapping[str, str], *,
                 project: str = DEFAULT_PROJECT) -> None:
        """`db` holds the queue (None only to build events, as tests do)."""
        self.queue = LocalQueue(db) if db is not None else None
        self.subscriber_urls = dict(subscriber_urls)
        self.project = project

    def publish_batch(self, messages: Sequence[OutgoingMessage], *,
                      timeout: float | None = None) -> list[str | Exception]:
        """Queue every message that has a subscriber (one statement); per message its id or the error."""
        results: list[str | Exception] = []
        queued: list[QueuedMessage] = []
        now = datetime.now(timezone.utc)
        for message in messages:
            url = self.subscriber_urls.get(message.topic)
            if not url:
                results.append(TransientError(f"no local subscriber URL for topic {message.topic}",
                                              component="pubsub-local"))
                continue
            message_id = uuid.uuid4().hex
            headers, body = self.build_event(message, message_id, now)
            queued.append(QueuedMessage(name=f"msg-{message_id}", queue=message.topic, url=url,
                                        body=body, headers=headers))
            results.append(message_id)
        if queued:
            try:
                self.queue.enqueue(queued)
            except TransientError as exc:
                return [exc if isinstance(r, str) else r for r in results]
        return results

    def build_event(self, message: OutgoingMessage, message_id: str,
                    publish_time: datetime) -> tuple[dict[str, str], bytes]:
        """Headers and body of the Eventarc-style CloudEvent for `message`, in binary mode (the
        attributes as `ce-` headers, the data as the body), as the CloudEvents SDK's `to_binary`
        writes it (`tests/unit/test_local_events.py` holds the two together)."""
        published = _rfc3339(publish_time)
        pubsub_message: dict[str, Any] = {
            "data": base64.b64encode(message.data).decode("ascii"),
            "attributes": dict(message.attributes),
            "messageId": message_id,
            "publishTime": published,
        }
        if message.ordering_key:
            pubsub_message["orderingKey"] = message.ordering_key
        headers = {
            "content-type": "application/json",
            "ce-specversion": "1.0",
            "ce-id": message_id,
            "ce-source": f"//pubsub.googleapis.com/projects/{self.project}/topics/{message.topic}",
            "ce-type": PUBSUB_EVENT_TYPE,
            "ce-time": published,
        }
        body = {"message": pubsub_message,
                "subscription": f"projects/{self.project}/subscriptions/local-{message.topic}"}
        return headers, json.dumps(body).encode()

    def check(self, topics: Iterable[str] = TOPICS) -> None:
        """TransientError when a topic has no subscriber URL (nothing would be delivered) or the
        queue cannot be read."""
        missing = [topic for topic in topics if not self.subscriber_urls.get(topic)]
        if missing:
            raise TransientError(f"no local subscriber URL for {', '.join(missing)}",
                                 component="pubsub-local")
        if self.queue is not None:
            self.queue.check()

    def close(self) -> None:
        """Nothing to release: the queue is the database."""


def _rfc3339(moment: datetime) -> str:
    """`2026-01-02T03:04:05.678Z`, as Pub/Sub writes publishTime."""
    utc = moment.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
