"""LocalPublisher: Eventarc-shaped CloudEvents over HTTP, retries, and what a real
functions-framework subscriber makes of them."""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from shared.adapters.events import PUBSUB_EVENT_TYPE, LocalPublisher
from shared.adapters.ports import OutgoingMessage
from shared.domain.messages import TOPIC_EMAILS, TOPIC_EVENTS, TOPICS
from shared.errors import TransientError
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
    fail_ordering_keys: set[str] = field(default_factory=set)


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
            if received.json["message"].get("orderingKey") in recorder.fail_ordering_keys:
                status = 500
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


def publisher_for(url: str, **options) -> LocalPublisher:
    options.setdefault("backoff_base", 0.01)
    return LocalPublisher({TOPIC_EMAILS: url}, project=PROJECT, **options)


def email_message(order_id: str, n: int = 0) -> OutgoingMessage:
    body = {"v": 1, "order_id": order_id, "kind": "link", "reminder_index": n}
    return OutgoingMessage(
        topic=TOPIC_EMAILS, data=json.dumps(body).encode(), ordering_key=order_id,
        attributes={"type": "email.link", "order_id": order_id, "request_id": "req-1",
                    "message_key": f"{order_id}:link:{n}"})


def test_delivers_a_binary_mode_cloudevent_shaped_like_eventarc(subscriber):
    outgoing = email_message("order-local-1")

    [result] = publisher_for(subscriber.url).publish_batch([outgoing])

    assert isinstance(result, str) and result
    [request] = subscriber.requests
    assert request.path == "/"
    headers = request.headers
    assert headers["ce-type"] == PUBSUB_EVENT_TYPE
    assert headers["ce-source"] == f"//pubsub.googleapis.com/projects/{PROJECT}/topics/{TOPIC_EMAILS}"
    assert headers["ce-specversion"] == "1.0"
    assert headers["ce-id"] == result
    assert headers["content-type"] == "application/json"
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


def test_message_ids_are_unique(subscriber):
    publisher = publisher_for(subscriber.url)

    ids = publisher.publish_batch([email_message("order-a", n) for n in range(5)])
    ids += publisher.publish_batch([email_message("order-a", n) for n in range(5)])

    assert all(isinstance(i, str) for i in ids)
    assert len(set(ids)) == 10
    assert [r.headers["ce-id"] for r in subscriber.requests] == ids


def test_retries_after_500_with_the_same_event_then_succeeds(subscriber):
    subscriber.statuses.extend([500, 503])

    [result] = publisher_for(subscriber.url, attempts=3).publish_batch([email_message("order-r")])

    assert isinstance(result, str)
    assert len(subscriber.requests) == 3
    assert {r.headers["ce-id"] for r in subscriber.requests} == {result}
    assert len({r.body for r in subscriber.requests}) == 1


def test_returns_the_error_after_the_last_attempt(subscriber):
    subscriber.statuses.extend([500] * 10)

    [result] = publisher_for(subscriber.url, attempts=3).publish_batch([email_message("order-x")])

    assert isinstance(result, TransientError)
    assert "HTTP 500" in str(result)
    assert len(subscriber.requests) == 3


def test_connection_refused_is_retried_then_returned():
    publisher = publisher_for(f"http://127.0.0.1:{free_port()}/", attempts=2)

    [result] = publisher.publish_batch([email_message("order-refused")])

    assert isinstance(result, TransientError)
    assert isinstance(result.__cause__, requests.ConnectionError)


def test_topic_without_a_url_fails_only_its_messages(subscriber):
    no_url = OutgoingMessage(topic=TOPIC_EVENTS, data=b"{}", ordering_key="order-n")

    results = publisher_for(subscriber.url).publish_batch([no_url, email_message("order-n")])

    assert isinstance(results[0], TransientError)
    assert TOPIC_EVENTS in str(results[0])
    assert isinstance(results[1], str)
    assert [r.headers["ce-id"] for r in subscriber.requests] == [results[1]]


def test_after_a_failure_later_messages_for_that_key_are_not_sent(subscriber):
    subscriber.fail_ordering_keys.add("order-bad")
    batch = [email_message("order-bad", 0), email_message("order-good", 0),
             email_message("order-bad", 1), email_message("order-good", 1)]

    results = publisher_for(subscriber.url, attempts=2).publish_batch(batch)

    assert [type(r) for r in results] == [TransientError, str, TransientError, str]
    sent = [(r.json["message"]["orderingKey"], r.json["message"]["attributes"]["message_key"])
            for r in subscriber.requests]
    assert sent == [("order-bad", "order-bad:link:0")] * 2 + [
        ("order-good", "order-good:link:0"), ("order-good", "order-good:link:1")]


def test_check_names_topics_without_a_subscriber():
    LocalPublisher({topic: "http://127.0.0.1:1/" for topic in TOPICS}).check()
    with pytest.raises(TransientError, match=TOPIC_EVENTS):
        LocalPublisher({TOPIC_EMAILS: "http://127.0.0.1:1/"}).check()


@pytest.fixture
def function(tmp_path):
    with FunctionsFramework(tmp_path / f"received-{uuid.uuid4().hex[:6]}.jsonl") as server:
        yield server


def test_functions_framework_receives_the_same_cloudevent(function):
    outgoing = email_message("order-ff-1")

    [result] = publisher_for(function.url).publish_batch([outgoing])

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


def test_functions_framework_500_is_retried_with_the_same_id(function):
    outgoing = OutgoingMessage(topic=TOPIC_EMAILS, data=b'{"v": 1}', ordering_key="order-ff-2",
                               attributes={"type": "email.link", "fail_first": "1"})

    [result] = publisher_for(function.url, attempts=3).publish_batch([outgoing])

    assert isinstance(result, str)
    records = wait_for_records(function.output, 2)
    assert [r["attributes"]["id"] for r in records] == [result, result]
    assert [r["decoded"] for r in records] == ['{"v": 1}'] * 2
