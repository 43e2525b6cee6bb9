"""The stand-ins stop what they start: after `stop()`, no thread they started is alive and a
connection a client kept open is closed (the service's HTTP clients keep theirs alive)."""

from __future__ import annotations

import http.client
import threading
import time
from urllib.parse import urlsplit

import pytest

from devstack.outcome_receiver import OutcomeReceiver
from devstack.stores.shopify import ShopifyStandIn
from devstack.stores.woocommerce import WooCommerceStandIn
from tests.emulators.http_target import RecordingTarget

SECRET = "whsec_" + "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

STAND_INS = {
    "shopify": (ShopifyStandIn, "POST"),
    "woocommerce": (WooCommerceStandIn, "GET"),
    "outcome_receiver": (lambda: OutcomeReceiver(SECRET), "POST"),
    "http_target": (RecordingTarget, "POST"),
}


def _alive_after(before: set[threading.Thread], seconds: float = 1.0) -> list[str]:
    """Threads started since `before` that are still alive after `seconds` (a thread that is
    ending is given that long)."""
    deadline = time.monotonic() + seconds
    while True:
        alive = [t.name for t in threading.enumerate() if t not in before and t.is_alive()]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.02)


@pytest.mark.parametrize("name", STAND_INS)
def test_stop_ends_every_thread_and_kept_alive_connection(name):
    make, method = STAND_INS[name]
    before = set(threading.enumerate())
    stand_in = make().start()
    parts = urlsplit(stand_in.url)
    client = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        try:
            client.request(method, parts.path or "/", body=b"{}" if method == "POST" else None,
                           headers={"Content-Type": "application/json"})
            answer = client.getresponse()
            answer.read()
            assert answer.status < 500
        finally:
            stand_in.stop()
        assert _alive_after(before) == []
        # The server's end of the kept connection is closed: the client reads the end of the
        # stream. (The outcome receiver speaks HTTP/1.0: it closed the connection after answering.)
        if name == "outcome_receiver":
            assert client.sock is None
        else:
            client.sock.settimeout(5)
            assert client.sock.recv(1) == b""
    finally:
        client.close()
