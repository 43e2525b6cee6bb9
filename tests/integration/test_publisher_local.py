"""LocalPublisher: publishing queues durably and returns; the local dispatcher pushes
Eventarc-shaped CloudEvents over HTTP, retries with the same message, dead-letters after
the attempts run out; and what a real functions-framework subscriber makes of them."""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from datetime import timedelta

import pytest
from sqlalchemy import text

from devstack.task_dispatcher import TaskDispatcher
from shared.adapters.events import PUBSUB_EVENT_TYPE, LocalPublisher
from shared.adapters.tasks import RetryPolicy
from shared.ports import OutgoingMessage
from shared.domain.messages import TOPIC_EMAILS, TOPIC_EVENTS, TOPICS
from shared.errors import TransientError
from tests.emulators.fixtures import wait_until
from tests.emulators.pubsub import free_port
from tests.integration.push_target import FunctionsFramework, wait_for_records

PROJECT = "local-test-project"
RFC3339_MILLIS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Recorder:
    """What a stub subscriber received; answers `statuses` in turn, then 204."""

    url: str = ""
    requests: list[Received] = field(default_factory=list)
    statuses: deque[int] = field(default_factory=deque)


@pytest.fixture
def subscriber():
    recorder = Recorder()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            with lock:
                recorder.requests.append(received)
                status = recorder.statuses.popleft() if recorder.statuses else 204
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    recorder.url = f"http://127.0.0.1:{server.server_port}/"
    yield recorder
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


FAST_PUSH = RetryPolicy(max_attempts=3, max_retry_duration=timedelta(0), min_backoff=timedelta(milliseconds=20),
                        max_backoff=timedelta(milliseconds=100), max_doublings=3)


def publisher_for(db, url: str) -> LocalPublisher:
    return LocalPublisher(db, {TOPIC_EMAILS: url}, project=PROJECT)


def email_message(order_id: str, n: int = 0) -> OutgoingMessage:
    body = {"v": 1, "order_id": order_id, "kind": "link", "reminder_index": n}
    return OutgoingMessage(
        topic=TOPIC_EMAILS, data=json.dumps(body).encode(), ordering_key=order_id,
        attributes={"type": "email.link", "order_id": order_id, "request_id": "req-1",
                    "message_key": f"{order_id}:link:{n}"})


def rows(db):
    with db.read() as conn:
        return conn.execute(text("SELECT name, queue, attempts, done_at IS NOT NULL AS done, last_status "
                                 "FROM local_tasks ORDER BY created_at, name")).all()


def deliver_all(db, timeout=30.0):
    """Run a dispatcher (millisecond push backoff) until every queued row is finished."""
    with TaskDispatcher(db, push_retry_policy=FAST_PUSH, request_timeout=5) as dispatcher:
        assert wait_until(lambda: dispatcher.run_once() >= 0 and all(r.done for r in rows(db)), timeout)


def test_publish_queues_durably_and_returns_before_any_delivery(clean_tasks_db, subscriber):
    [result] = publisher_for(clean_tasks_db, subscriber.url).publish_batch([email_message("order-q")])

    assert isinstance(result, str) and subscriber.requests == []
    [row] = rows(clean_tasks_db)
    assert (row.name, row.queue, row.done) == (f"msg-{result}", TOPIC_EMAILS, False)


def test_delivers_a_binary_mode_cloudevent_shaped_like_eventarc(clean_tasks_db, subscriber):
    outgoing = email_message("order-local-1")

    [result] = publisher_for(clean_tasks_db, subscriber.url).publish_batch([outgoing])
    deliver_all(clean_tasks_db)

    assert isinstance(result, str) and result
    [request] = subscriber.requests
    assert request.path == "/"
    headers = request.headers
    assert headers["ce-type"] == PUBSUB_EVENT_TYPE
    assert headers["ce-source"] == f"//pubsub.googleapis.com/projects/{PROJECT}/topics/{TOPIC_EMAILS}"
    assert headers["ce-specversion"] == "1.0"
    assert headers["ce-id"] == result
    assert headers["content-type"] == "application/json"
    assert not any(name.startswith("x-cloudtasks") for name in headers)
    body = request.json
    assert set(body) == {"message", "subscription"}
    assert body["subscription"].startswith(f"projects/{PROJECT}/subscriptions/")
    message = body["message"]
    assert base64.b64decode(message["data"]) == outgoing.data
    assert message["attributes"] == outgoing.attributes
    assert message["messageId"] == result
    assert message["orderingKey"] == "order-local-1"
    assert RFC3339_MILLIS.match(message["publishTime"])
    assert headers["ce-time"] == message["publishTime"]


def test_message_ids_are_unique(clean_tasks_db, subscriber):
    publisher = publisher_for(clean_tasks_db, subscriber.url)

    ids = publisher.publish_batch([email_message("order-a", n) for n in range(5)])
    ids += publisher.publish_batch([email_message("order-a", n) for n in range(5)])
    deliver_all(clean_tasks_db)

    assert all(isinstance(i, str) for i in ids)
    assert len(set(ids)) == 10
    assert sorted(r.headers["ce-id"] for r in subscriber.requests) == sorted(ids)


def test_a_failed_push_is_retried_with_the_same_message_then_succeeds(clean_tasks_db, subscriber):
    subscriber.statuses.extend([500, 503])

    [result] = publisher_for(clean_tasks_db, subscriber.url).publish_batch([email_message("order-r")])
    deliver_all(clean_tasks_db)

    assert len(subscriber.requests) == 3
    assert {r.headers["ce-id"] for r in subscriber.requests} == {result}
    assert len({r.body for r in subscriber.requests}) == 1
    assert rows(clean_tasks_db)[0].last_status == "204"


def test_dead_letters_after_the_last_attempt(clean_tasks_db, subscriber):
    subscriber.statuses.extend([500] * 10)

    publisher_for(clean_tasks_db, subscriber.url).publish_batch([email_message("order-x")])
    deliver_all(clean_tasks_db)

    assert len(subscriber.requests) == FAST_PUSH.max_attempts
    [row] = rows(clean_tasks_db)
    assert (row.attempts, row.last_status) == (FAST_PUSH.max_attempts, "gave_up")


def test_connection_refused_counts_as_a_failed_attempt(clean_tasks_db):
    publisher_for(clean_tasks_db, f"http://127.0.0.1:{free_port()}/").publish_batch([email_message("order-refused")])
    deliver_all(clean_tasks_db)

    [row] = rows(clean_tasks_db)
    assert (row.attempts, row.last_status) == (FAST_PUSH.max_attempts, "gave_up")


def test_topic_without_a_url_fails_only_its_messages(clean_tasks_db, subscriber):
    no_url = OutgoingMessage(topic=TOPIC_EVENTS, data=b"{}", ordering_key="order-n")

    results = publisher_for(clean_tasks_db, subscriber.url).publish_batch([no_url, email_message("order-n")])
    deliver_all(clean_tasks_db)

    assert isinstance(results[0], TransientError)
    assert TOPIC_EVENTS in str(results[0])
    assert isinstance(results[1], str)
    assert [r.headers["ce-id"] for r in subscriber.requests] == [results[1]]


def test_a_queue_that_cannot_be_written_fails_every_message(clean_tasks_db, subscriber):
    with clean_tasks_db.read() as conn:
        conn.execute(text("ALTER TABLE local_tasks RENAME TO local_tasks_away"))
    try:
        results = publisher_for(clean_tasks_db, subscriber.url).publish_batch(
            [email_message("order-d", 0), email_message("order-d", 1)])
    finally:
        with clean_tasks_db.read() as conn:
            conn.execute(text("ALTER TABLE local_tasks_away RENAME TO local_tasks"))
    assert all(isinstance(r, TransientError) for r in results)


def test_check_names_topics_without_a_subscriber(clean_tasks_db):
    LocalPublisher(clean_tasks_db, {topic: "http://127.0.0.1:1/" for topic in TOPICS}).check()
    with pytest.raises(TransientError, match=TOPIC_EVENTS):
        LocalPublisher(clean_tasks_db, {TOPIC_EMAILS: "http://127.0.0.1:1/"}).check()


@pytest.fixture
def function(tmp_path):
    with FunctionsFramework(tmp_path / f"received-{uuid.uuid4().hex[:6]}.jsonl") as server:
        yield server


def test_functions_framework_receives_the_same_cloudevent(clean_tasks_db, function):
    outgoing = email_message("order-ff-1")

    [result] = publisher_for(clean_tasks_db, function.url).publish_batch([outgoing])
    deliver_all(clean_tasks_db)

    assert isinstance(result, str)
    [record] = wait_for_records(function.output, 1)
    attributes, data = record["attributes"], record["data"]
    assert attributes["type"] == PUBSUB_EVENT_TYPE
    assert attributes["source"] == f"//pubsub.googleapis.com/projects/{PROJECT}/topics/{TOPIC_EMAILS}"
    assert attributes["id"] == result
    assert attributes["specversion"] == "1.0"
    assert attributes["time"] == data["message"]["publishTime"]
    # Passed through as a CloudEvent, not converted: no "@type", subscription kept.
    assert data["subscription"].startswith(f"projects/{PROJECT}/subscriptions/")
    assert data["message"] == {
        "data": base64.b64encode(outgoing.data).decode(),
        "attributes": outgoing.attributes,
        "messageId": result,
        "publishTime": data["message"]["publishTime"],
        "orderingKey": "order-ff-1",
    }
    assert record["decoded"].encode() == outgoing.data


def test_functions_framework_500_is_retried_with_the_same_id(clean_tasks_db, function):
    outgoing = OutgoingMessage(topic=TOPIC_EMAILS, data=b'{"v": 1}', ordering_key="order-ff-2",
                               attributes={"type": "email.link", "fail_first": "1"})

    [result] = publisher_for(clean_tasks_db, function.url).publish_batch([outgoing])
    deliver_all(clean_tasks_db)

    assert isinstance(result, str)
    records = wait_for_records(function.output, 2)
    assert [r["attributes"]["id"] for r in records] == [result, result]
    assert [r["decoded"] for r in records] == ['{"v": 1}'] * 2
