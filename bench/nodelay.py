"""What TCP_NODELAY on the pool's connections buys: statements bigger than pg8000's 8 KB
write buffer (a relay pass's queued messages, a batch of timers) leave in two segments,
and with Nagle's algorithm the second waits for the server's delayed ACK.

    .venv/bin/python -m bench.nodelay [--n 200]

The same statements on the same pooled connection, alternating the socket option on and
off per call; printed: median latency each way and the ratio, for 1, 3 and 20 messages.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import time
import uuid

from bench._common import database
from shared.db.local_queue import LocalQueue, QueuedMessage

BODY = b'{"specversion": "1.0", "data": "' + b"x" * 400 + b'"}'  # about a CloudEvent's size


def messages(count: int) -> list[QueuedMessage]:
    return [QueuedMessage(uuid.uuid4().hex, "customer-emails", "http://127.0.0.1:9/", BODY,
                          {"ce-id": uuid.uuid4().hex, "ce-type": "google.cloud.pubsub.topic.v1.messagePublished"})
            for _ in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200, help="calls per size and mode")
    args = parser.parse_args()
    with database(DB_POOL_SIZE="1", DB_MAX_OVERFLOW="0") as (db, _settings):
        queue = LocalQueue(db)
        with db.engine.connect() as conn:
            sock = conn.connection.dbapi_connection._usock
        print(f"TCP_NODELAY on the pool's connection: {sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0}")
        print(f"{'messages':>8} {'nodelay ms':>11} {'nagle ms':>9} {'nagle / nodelay':>16}")
        for count in (1, 3, 20):
            times: dict[int, list[float]] = {1: [], 0: []}
            for i in range(2 * args.n):
                flag = i % 2
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, flag)
                batch = messages(count)
                started = time.perf_counter()
                queue.enqueue(batch)
                times[flag].append(time.perf_counter() - started)
            on, off = statistics.median(times[1]) * 1000, statistics.median(times[0]) * 1000
            print(f"{count:>8} {on:>11.2f} {off:>9.2f} {off / on:>16.1f}")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


if __name__ == "__main__":
    main()
