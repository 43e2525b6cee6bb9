"""PubSubPublisher against Google's Pub/Sub emulator: ordering, attributes, failures, check()."""

from __future__ import annotations

import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from google.api_core import exceptions as api_exceptions
from google.cloud import pubsub_v1

from shared.adapters.events import LocalPublisher, PubSubPublisher, make_publisher
from shared.ports import OutgoingMessage
from shared.config import EventsSettings
from shared.domain.messages import TOPIC_EVENTS, TOPICS
from shared.errors import TransientError
from tests.emulators.pubsub import PROJECT, free_port


@pytest.fixture
def publisher(pubsub_env):
    publisher = PubSubPublisher(PROJECT, timeout=20)
    publisher.ensure_topics()
    yield publisher
    publisher.close()


@pytest.fixture
def subscriber(pubsub_env):
    client = pubsub_v1.SubscriberClient()
    yield client
    client.close()


def ordered_subscription(subscriber, topic: str) -> str:
    """A new pull subscription with message ordering; only later messages reach it."""
    path = subscriber.subscription_path(PROJECT, f"sub-{uuid.uuid4().hex[:12]}")
    subscriber.create_subscription(request={
        "name": path, "topic": f"projects/{PROJECT}/topics/{topic}",
        "enable_message_ordering": True, "ack_deadline_seconds": 60,
    })
    return path


def pull_all(subscriber, subscription: str, count: int, wait: float = 30.0) -> list:
    """Pull and ack until `count` messages arrived or `wait` seconds passed."""
    received = []
    deadline = time.monotonic() + wait
    while len(received) < count and time.monotonic() < deadline:
        response = subscriber.pull(
            request={"subscription": subscription, "max_messages": 100}, timeout=5)
        if response.received_messages:
            received.extend(r.message for r in response.received_messages)
            subscriber.acknowledge(request={
                "subscription": subscription,
                "ack_ids": [r.ack_id for r in response.received_messages]})
    return received


def message(order_id: str, seq: int) -> OutgoingMessage:
    body = {"v": 1, "order_id": order_id, "seq": seq}
    return OutgoingMessage(
        topic=TOPIC_EVENTS,
        data=json.dumps(body).encode(),
        ordering_key=order_id,
        attributes={"type": "verification.requested", "order_id": order_id,
                    "request_id": f"req-{seq}", "message_key": f"{order_id}:{seq}"},
    )


def test_publish_batch_keeps_data_attributes_and_order_per_key(publisher, subscriber):
    subscription = ordered_subscription(subscriber, TOPIC_EVENTS)
    first, second = f"order-{uuid.uuid4().hex[:8]}", f"order-{uuid.uuid4().hex[:8]}"
    # Interleaved, as an outbox relay would read rows of two orders.
    batch = [message(first if i % 2 == 0 else second, i) for i in range(10)]

    results = publisher.publish_batch(batch)

    assert all(isinstance(r, str) and r for r in results), results
    assert len(set(results)) == len(batch)
    received = pull_all(subscriber, subscription, len(batch))
    assert len(received) == len(batch)
    by_id = {m.message_id: m for m in received}
    assert set(by_id) == set(results)
    for sent, message_id in zip(batch, results):
        got = by_id[message_id]
        assert got.data == sent.data
        assert dict(got.attributes) == sent.attributes
        assert got.ordering_key == sent.ordering_key
    for key in (first, second):
        seqs = [json.loads(m.data)["seq"] for m in received if m.ordering_key == key]
        assert seqs == [json.loads(m.data)["seq"] for m in batch if m.ordering_key == key]


def test_empty_batch_publishes_nothing(publisher):
    assert publisher.publish_batch([]) == []


def test_failed_publish_resumes_its_ordering_key(publisher, subscriber):
    missing_topic = f"missing-{uuid.uuid4().hex[:8]}"
    key = f"order-{uuid.uuid4().hex[:8]}"
    outgoing = OutgoingMessage(topic=missing_topic, data=b"{}", ordering_key=key,
                               attributes={"type": "t"})

    first = publisher.publish_batch([outgoing, outgoing])
    second = publisher.publish_batch([outgoing])

    assert all(isinstance(r, TransientError) and r.component == "pubsub" for r in first)
    assert isinstance(first[0].__cause__, api_exceptions.NotFound)
    # Had the key not been resumed, the client would refuse it locally with
    # PublishToPausedOrderingKeyException instead of asking the server again.
    assert isinstance(second[0], TransientError)
    assert isinstance(second[0].__cause__, api_exceptions.NotFound)

    publisher.ensure_topics([missing_topic])
    subscription = ordered_subscription(subscriber, missing_topic)
    third = publisher.publish_batch([outgoing])
    assert isinstance(third[0], str)
    [got] = pull_all(subscriber, subscription, 1)
    assert (got.message_id, got.ordering_key, got.data) == (third[0], key, b"{}")


def test_a_republish_queued_behind_a_failing_message_fails_transiently(publisher, subscriber, monkeypatch):
    missing_topic = f"missing-{uuid.uuid4().hex[:8]}"
    outgoing = OutgoingMessage(topic=missing_topic, data=b"{}", ordering_key=f"order-{uuid.uuid4().hex[:8]}",
                               attributes={"type": "t"})
    client = publisher.client
    sent, release = threading.Event(), threading.Event()

    def slow_publish(*args, **kwargs):  # the first send hangs, then fails (NotFound)
        sent.set()
        release.wait(10)
        return real_publish(*args, **kwargs)

    real_publish = client._gapic_publish
    monkeypatch.setattr(client, "_gapic_publish", slow_publish)
    # A relay gives up waiting; its message is still in flight when the relay re-publishes it,
    # so the client queues the repeat behind it, and cancels it when the first one fails.
    first = publisher.publish_batch([outgoing], timeout=0.3)
    assert isinstance(first[0], TransientError) and sent.is_set()
    with ThreadPoolExecutor(1) as pool:
        repeat = pool.submit(publisher.publish_batch, [outgoing], timeout=10)
        time.sleep(0.3)
        release.set()
        [again] = repeat.result()

    assert isinstance(again, TransientError)  # so the relay retries it, never parks it as dead
    publisher.ensure_topics([missing_topic])
    subscription = ordered_subscription(subscriber, missing_topic)
    later = publisher.publish_batch([outgoing])  # the key was resumed
    assert isinstance(later[0], str)
    assert [m.message_id for m in pull_all(subscriber, subscription, 1)] == later


def test_reserved_attribute_name_fails_that_message_only(publisher):
    good = message(f"order-{uuid.uuid4().hex[:8]}", 1)
    bad = OutgoingMessage(topic=TOPIC_EVENTS, data=b"{}", ordering_key="k",
                          attributes={"timeout": "5"})

    results = publisher.publish_batch([bad, good])

    assert isinstance(results[0], ValueError)
    assert isinstance(results[1], str)


def test_check_passes_when_topics_exist(publisher):
    publisher.check()
    publisher.check(TOPICS)


def test_check_raises_transient_error_for_a_missing_topic(publisher):
    with pytest.raises(TransientError) as caught:
        publisher.check([f"missing-{uuid.uuid4().hex[:8]}"])
    assert isinstance(caught.value.__cause__, api_exceptions.NotFound)


def test_check_and_publish_against_a_closed_port_are_transient(monkeypatch):
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{free_port()}")
    before = set(threading.enumerate())
    publisher = PubSubPublisher(PROJECT, timeout=2, check_timeout=2)
    try:
        with pytest.raises(TransientError) as caught:
            publisher.check()
        assert caught.value.component == "pubsub"
        assert isinstance(caught.value.__cause__, api_exceptions.GoogleAPIError)

        results = publisher.publish_batch([message("order-closed", 1), message("order-closed", 2)])
        assert len(results) == 2
        assert all(isinstance(r, TransientError) for r in results)
    finally:
        publisher.close()
    # Nothing keeps retrying in the background once the batch has failed: the library stretches
    # any publish retry to 2**32 s under message ordering, so the client is given none.
    deadline = time.monotonic() + 10
    while _commit_threads(before) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _commit_threads(before) == []


def _commit_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    return [t for t in threading.enumerate()
            if t not in before and "CommitBatchPublisher" in t.name and t.is_alive()]


def test_make_publisher_picks_by_events_backend():
    pubsub = make_publisher(EventsSettings(backend="pubsub", project="proj-a"))
    local = make_publisher(EventsSettings(backend="local",
                                          local_subscriber_urls={TOPIC_EVENTS: "http://127.0.0.1:1/"}))

    assert isinstance(pubsub, PubSubPublisher) and pubsub.project == "proj-a"
    assert pubsub._client is None  # built on first use, not here
    assert isinstance(local, LocalPublisher)
    assert local.subscriber_urls == {TOPIC_EVENTS: "http://127.0.0.1:1/"}
