"""Event throughput against Google's Pub/Sub emulator (started and stopped here).

Also: the outbox relay publishing to the emulator, and each subscriber's
handler (messages/s on first delivery and on a duplicate).

Publisher part: messages/s through `PubSubPublisher.publish_batch` in batches,
as the outbox relay sends them, against one-at-a-time publish-and-wait (a
batch of one). Both use ordering keys and one ordered subscription on the
topic. Figures are for comparing the two modes in one run on one machine;
the emulator is not the cloud, so absolute numbers mean little.

    .venv/bin/python -m bench.events [--messages 5000] [--keys 100] [--batch 100] [--single-messages 1000]

One-at-a-time is measured on fewer messages by default (it is slow); rates
are per message, so the ratio compares like with like. Two things shape the
figures: the client holds each batch for up to `max_latency` (10 ms by
default) before sending, which one-at-a-time pays on every message; and with
ordering, each ordering key has its own batches, so a batch of 100 messages
over 100 keys is still about 100 Publish calls (try `--keys 5`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import text

from shared.adapters.events import PubSubPublisher
from shared.ports import OutgoingMessage
from tests.emulators.pubsub import PROJECT, PubSubEmulator


@dataclass(frozen=True)
class PublisherFigures:
    messages: int
    keys: int
    batch_size: int
    batched_seconds: float
    batched_failures: int
    single_messages: int
    single_seconds: float
    single_failures: int

    @property
    def batched_rate(self) -> float:
        return self.messages / self.batched_seconds

    @property
    def single_rate(self) -> float:
        return self.single_messages / self.single_seconds

    @property
    def ratio(self) -> float:
        return self.batched_rate / self.single_rate


def _messages(topic: str, count: int, keys: int, run: str) -> list[OutgoingMessage]:
    """Outbox-like messages: a small JSON body, the four attributes, order id as key."""
    out = []
    for n in range(count):
        order_id = f"order-{run}-{n % keys}"
        body = {"v": 1, "id": str(uuid.uuid4()), "type": "verification.reminder_due",
                "order_id": order_id, "occurred_at": "2026-01-01T00:00:00+00:00",
                "data": {"reminder_index": n // keys}}
        out.append(OutgoingMessage(
            topic=topic, data=json.dumps(body).encode(), ordering_key=order_id,
            attributes={"type": body["type"], "order_id": order_id,
                        "request_id": f"req-{run}", "message_key": f"{order_id}:{n}"}))
    return out


def _timed(publisher: PubSubPublisher, batches: Sequence[Sequence[OutgoingMessage]]) -> tuple[float, int]:
    failures = 0
    started = time.perf_counter()
    for batch in batches:
        failures += sum(isinstance(r, Exception) for r in publisher.publish_batch(batch))
    return time.perf_counter() - started, failures


def publisher_throughput(*, messages: int = 5000, keys: int = 100, batch_size: int = 100,
                         single_messages: int = 1000, project: str = PROJECT) -> PublisherFigures:
    """Publish `messages` in batches of `batch_size`, then `single_messages` one at a time.

    Needs PUBSUB_EMULATOR_HOST. Each mode gets its own fresh topic (with one
    ordered pull subscription, so the emulator stores what it accepts) and is
    warmed up first, so neither pays for channel set-up.
    """
    from google.cloud import pubsub_v1

    run = uuid.uuid4().hex[:8]
    publisher = PubSubPublisher(project, timeout=120)
    subscriber = pubsub_v1.SubscriberClient()
    try:
        topics = {mode: f"bench-{mode}-{run}" for mode in ("batched", "single")}
        publisher.ensure_topics(topics.values())
        for topic in topics.values():
            subscriber.create_subscription(request={
                "name": subscriber.subscription_path(project, f"{topic}-sub"),
                "topic": publisher.topic_path(topic), "enable_message_ordering": True})
            publisher.publish_batch(_messages(topic, 20, 10, f"warm-{run}"))

        batched = _messages(topics["batched"], messages, keys, run)
        batched_seconds, batched_failures = _timed(
            publisher, [batched[i:i + batch_size] for i in range(0, len(batched), batch_size)])
        single = _messages(topics["single"], single_messages, keys, run)
        single_seconds, single_failures = _timed(publisher, [[m] for m in single])
    finally:
        publisher.close()
        subscriber.close()
    return PublisherFigures(messages, keys, batch_size, batched_seconds, batched_failures,
                            single_messages, single_seconds, single_failures)


def print_publisher(figures: PublisherFigures) -> None:
    print(f"publisher: {figures.messages} messages over {figures.keys} ordering keys")
    print(f"  publish_batch, {figures.batch_size} a batch: {figures.batched_rate:9.0f} msg/s "
          f"({figures.batched_seconds:.2f} s, {figures.batched_failures} failed)")
    print(f"  one at a time, publish-and-wait:  {figures.single_rate:9.0f} msg/s "
          f"({figures.single_messages} in {figures.single_seconds:.2f} s, "
          f"{figures.single_failures} failed)")
    print(f"  ratio batched / one at a time:    {figures.ratio:9.1f}x")


def relay_throughput(db, project: str, *, orders: int = 1000) -> tuple[int, float]:
    """Outbox rows (3 messages per order, as an order webhook writes) relayed to the emulator."""
    from shared.adapters.tasks import LocalTaskScheduler
    from shared.db import outbox
    from shared.domain.model import Email, Event
    from shared.domain.effects import Effects
    from shared.handlers.relay import relay

    run = uuid.uuid4().hex[:8]
    publisher = PubSubPublisher(project, timeout=120)
    publisher.ensure_topics()
    now = datetime.now(timezone.utc)
    with db.transaction() as conn:
        rows = []
        for i in range(orders):
            fx = Effects(f"relay-{run}-{i}", now)
            fx.event(Event.ORDER_RECEIVED)
            fx.event(Event.VERIFICATION_REQUESTED)
            fx.email(Email.LINK)
            rows.extend(fx.outbox)
        outbox.write_effects(conn, [], rows)
    started = time.perf_counter()
    report = relay(db, LocalTaskScheduler(db, "http://127.0.0.1:9/"), publisher, budget_seconds=600)
    elapsed = time.perf_counter() - started
    publisher.close()
    assert report.failed == 0 and report.delivered == len(rows), report
    return report.delivered, elapsed


def subscriber_throughput(db, settings, *, messages: int = 1000) -> dict[str, tuple[float, float]]:
    """Messages/s through each subscriber's handler: first deliveries, then every one again."""
    import io

    from shared.adapters.email import ConsoleSender
    from shared.adapters.refunds import ManualRefundGateway
    from shared.providers.veriff.adapter import LocalVerificationProvider
    from shared.domain.messages import EmailJob, EventMessage, OrderAction, OrderPlaced
    from shared.handlers import analytics, emails, intake, refunds

    logging.getLogger("shared").setLevel(logging.ERROR)  # the manual gateway warns once per order
    run = uuid.uuid4().hex[:8]
    now = datetime.now(timezone.utc)
    order_ids = [f"sub-{run}-{i}" for i in range(messages)]
    for order_id in order_ids:
        intake.place_order(db, settings, OrderPlaced("orders", f"m-{order_id}", order_id, "b@example.com"), now=now)
    with db.transaction() as conn:
        conn.execute(text("UPDATE verification_sessions SET status = 'expired' WHERE order_id = ANY(:o)"),
                     {"o": order_ids})
    sender = ConsoleSender(sender="bench@example.com", stream=io.StringIO())
    provider = LocalVerificationProvider()
    gateway = ManualRefundGateway()
    events = [EventMessage(id=str(uuid.uuid4()), type="order.received", order_id=o, occurred_at=now.isoformat())
              for o in order_ids]
    jobs = [EmailJob(order_id=o, kind="expired") for o in order_ids]
    actions = [OrderAction(order_id=o, action="refund", reason="expired") for o in order_ids]
    handlers = {
        "record_analytics": (events, lambda e: analytics.record_event(db, e)),
        "send_customer_email": (jobs, lambda j: emails.send_email(db, settings, sender, provider, j, now=now)),
        "request_refund": (actions, lambda a: refunds.request_refund(db, settings, gateway, a, now=now)),
    }
    figures = {}
    for name, (items, handle) in handlers.items():
        rates = []
        for _ in range(2):  # first deliveries, then duplicates
            started = time.perf_counter()
            for item in items:
                handle(item)
            rates.append(len(items) / (time.perf_counter() - started))
        figures[name] = (rates[0], rates[1])
    return figures


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--single-messages", type=int, default=1000,
                        help="messages for the one-at-a-time mode (it is slow)")
    parser.add_argument("--relay-orders", type=int, default=1000)
    parser.add_argument("--subscriber-messages", type=int, default=1000)
    args = parser.parse_args(argv)

    os.environ.setdefault("NO_GCE_CHECK", "true")
    previous = os.environ.get("PUBSUB_EMULATOR_HOST")
    with PubSubEmulator() as emulator:
        os.environ["PUBSUB_EMULATOR_HOST"] = emulator.host
        try:
            figures = publisher_throughput(messages=args.messages, keys=args.keys,
                                           batch_size=args.batch,
                                           single_messages=args.single_messages)
        finally:
            if previous is None:
                os.environ.pop("PUBSUB_EMULATOR_HOST", None)
            else:
                os.environ["PUBSUB_EMULATOR_HOST"] = previous
    print_publisher(figures)

    from bench._common import database

    with database() as (db, settings), PubSubEmulator() as emulator:
        os.environ["PUBSUB_EMULATOR_HOST"] = emulator.host
        delivered, seconds = relay_throughput(db, PROJECT, orders=args.relay_orders)
        print(f"outbox relay -> emulator: {delivered} messages in {seconds:.2f} s = {delivered / seconds:.0f} msg/s "
              f"(claim FOR UPDATE SKIP LOCKED, publish_batch, mark delivered; 3 messages per order)")
        os.environ.pop("PUBSUB_EMULATOR_HOST", None)
        print(f"subscriber handlers, {args.subscriber_messages} messages each, one thread (first / duplicate):")
        for name, (first, again) in subscriber_throughput(db, settings, messages=args.subscriber_messages).items():
            print(f"  {name:<22}{first:8.0f} msg/s first delivery {again:8.0f} msg/s duplicate")


if __name__ == "__main__":
    main()
