"""The container builds each part once, even when a fresh instance's first requests ask together."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import shared.adapters.email
import shared.adapters.refunds
from shared.bootstrap import Container

THREADS = 8


def _first_use_together(read) -> list:
    """`read()` from THREADS threads released at once; what each got."""
    start = threading.Barrier(THREADS)
    got: list = [None] * THREADS

    def one(i: int) -> None:
        start.wait()
        got[i] = read()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return got


def test_parts_asked_for_together_are_built_once(monkeypatch):
    built = []

    def slow_sender(settings):
        time.sleep(0.05)  # long enough for every thread to be asking meanwhile
        sender = object()
        built.append(sender)
        return sender

    monkeypatch.setattr(shared.adapters.email, "make_email_sender", slow_sender)
    container = Container(settings=SimpleNamespace(email="email settings"), db=None)

    got = _first_use_together(lambda: container.email_sender)

    assert len(built) == 1
    assert all(sender is built[0] for sender in got)


def test_a_part_may_be_built_from_another(monkeypatch):
    container = Container(settings=SimpleNamespace(email="e", refunds="r"), db=None)
    gateway = object()
    monkeypatch.setattr(shared.adapters.refunds, "make_refund_gateway", lambda settings: gateway)
    monkeypatch.setattr(shared.adapters.email, "make_email_sender", lambda settings: ("sender", container.refund_gateway))

    got = _first_use_together(lambda: container.email_sender)

    assert all(sender == ("sender", gateway) for sender in got)
    assert container.refund_gateway is gateway
