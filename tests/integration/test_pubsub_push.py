"""End to end: Pub/Sub emulator push subscription -> `functions-framework` cloudevent function.

What the emulator sends is Pub/Sub's *wrapped push* format, not a CloudEvent:
a POST with `Content-Type: application/json` and no `ce-*` headers, body
`{"message": {"data", "attributes", "messageId", "message_id", "publishTime",
"publish_time"}, "subscription": "projects/.../subscriptions/..."}`, no
authentication header.

The functions framework sees that the request is not a CloudEvent and converts
this "legacy Pub/Sub push" into one (functions_framework.event_conversion):

- `type` is `google.cloud.pubsub.topic.v1.messagePublished`, `id` is the
  messageId, `time` the publishTime, as from Eventarc;
- `source` is `//pubsub.googleapis.com/` plus the topic path *only when the
  push URL's path contains `projects/P/topics/T`*; pushed to `/` it is just
  `//pubsub.googleapis.com/`;
- `data` is `{"message": {"@type": "type.googleapis.com/google.pubsub.v1.PubsubMessage",
  "data", "attributes", "messageId", "publishTime"}}`: the `subscription`
  field is dropped, and an `@type` key is added.

In the cloud, Eventarc's own push subscription delivers a binary-mode
CloudEvent (`ce-*` headers, source with the topic, data
`{"message": {..., "orderingKey"?}, "subscription": ...}`) with an OIDC token,
which the framework passes through unconverted. Also, this emulator leaves
`orderingKey` out of push bodies even on an ordered subscription (the real
service includes it), and redelivers a failed push within about a second
rather than by the subscription's retry policy. So these tests pin down what
the emulator path does; `LocalPublisher` (tests/integration/test_publisher_local.py)
is what reproduces the Eventarc shape.
"""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from google.cloud import pubsub_v1

from shared.adapters.events import PUBSUB_EVENT_TYPE, PubSubPublisher
from shared.ports import OutgoingMessage
from tests.emulators.pubsub import PROJECT
from tests.integration.push_target import FunctionsFramework, wait_for_records


@pytest.fixture
def topic(pubsub_env):
    name = f"push-{uuid.uuid4().hex[:10]}"
    publisher = PubSubPublisher(PROJECT, timeout=20)
    publisher.ensure_topics([name])
    yield name
    publisher.close()


@pytest.fixture
def function(tmp_path):
    with FunctionsFramework(tmp_path / "received.jsonl") as server:
        yield server


@pytest.fixture
def push_to(pubsub_env, topic):
    """Create an ordered push subscription on `topic` to a URL; deleted afterwards."""
    client = pubsub_v1.SubscriberClient()
    created = []

    def create(endpoint: str) -> str:
        path = client.subscription_path(PROJECT, f"push-sub-{uuid.uuid4().hex[:10]}")
        client.create_subscription(request={
            "name": path, "topic": f"projects/{PROJECT}/topics/{topic}",
            "enable_message_ordering": True, "push_config": {"push_endpoint": endpoint},
        })
        created.append(path)
        return path

    yield create
    for path in created:  # so the emulator stops pushing to a server that is gone
        client.delete_subscription(request={"subscription": path})
    client.close()


def publish_one(topic: str, body: dict, **attributes: str) -> str:
    publisher = PubSubPublisher(PROJECT, timeout=20)
    try:
        [result] = publisher.publish_batch([OutgoingMessage(
            topic=topic, data=json.dumps(body).encode(), ordering_key="order-push-1",
            attributes={"type": "email.link", "order_id": "order-push-1", **attributes})])
    finally:
        publisher.close()
    assert isinstance(result, str), result
    return result


def test_push_to_root_arrives_as_converted_cloudevent(topic, function, push_to):
    subscription = push_to(function.url)
    body = {"v": 1, "order_id": "order-push-1", "kind": "link"}

    message_id = publish_one(topic, body, message_key="order-push-1:link:0")

    [record] = wait_for_records(function.output, 1)
    attributes, data = record["attributes"], record["data"]
    assert attributes["type"] == PUBSUB_EVENT_TYPE
    assert attributes["id"] == message_id
    assert attributes["specversion"] == "1.0"
    assert attributes["source"] == "//pubsub.googleapis.com/"  # no topic: pushed to "/"
    assert attributes["time"] == data["message"]["publishTime"]
    assert json.loads(record["decoded"]) == body
    assert data["message"]["data"] == base64.b64encode(json.dumps(body).encode()).decode()
    assert data["message"]["attributes"] == {
        "type": "email.link", "order_id": "order-push-1", "message_key": "order-push-1:link:0"}
    assert data["message"]["messageId"] == message_id
    assert data["message"]["@type"] == "type.googleapis.com/google.pubsub.v1.PubsubMessage"
    # Differences from Eventarc, pinned so a change in the emulator or framework shows:
    assert "subscription" not in data, subscription
    assert "orderingKey" not in data["message"]


def test_push_to_a_topic_path_gives_the_cloudevent_its_source(topic, function, push_to):
    push_to(f"{function.url}projects/{PROJECT}/topics/{topic}")

    message_id = publish_one(topic, {"v": 1, "n": 2})

    [record] = wait_for_records(function.output, 1)
    assert record["attributes"]["source"] == f"//pubsub.googleapis.com/projects/{PROJECT}/topics/{topic}"
    assert record["attributes"]["id"] == message_id
    assert json.loads(record["decoded"]) == {"v": 1, "n": 2}


def test_failed_push_is_redelivered_with_the_same_message_id(topic, function, push_to):
    push_to(function.url)

    message_id = publish_one(topic, {"v": 1, "n": 3}, fail_first="1")

    records = wait_for_records(function.output, 2)
    assert len(records) == 2
    assert [r["attributes"]["id"] for r in records] == [message_id, message_id]
    assert [json.loads(r["decoded"]) for r in records] == [{"v": 1, "n": 3}] * 2
