"""Verify once under real concurrency (issue 23): a returning customer's orders racing the
revocation of their record, each on its own thread and pooled connection."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

from sqlalchemy import text

from shared.domain.messages import OrderPlaced
from shared.handlers import intake, transitions

ORDERS = 16


def _scalar(db, sql: str, **params):
    with db.read() as conn:
        return conn.execute(text(sql), params).scalar_one()


def test_sixteen_orders_racing_a_revocation_are_each_reused_or_opened_normally(db, settings):
    now = datetime.now(timezone.utc)
    email, customer, tag = f"race-{uuid.uuid4().hex[:8]}@example.com", f"c-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex[:8]
    first = f"race-{tag}-first"
    assert intake.place_order(db, settings, OrderPlaced("orders", f"m-{first}", first, email, customer_id=customer),
                              now=now).status == "accepted"
    assert transitions.operator_action(db, first, "verify", operator="op", now=now, reason="id_checked_in_store",
                                       age_checked=True, reverify_after=settings.reuse.reverify_after).status == "accepted"
    keys = [f"race-{tag}-{i}" for i in range(ORDERS)]
    barrier = threading.Barrier(ORDERS + 1)
    revoked_now = threading.Event()

    def order(i: int) -> str:
        barrier.wait()
        # The first half races the revocation (spread over ~160 ms); the second half comes once
        # it committed, still concurrent with each other and with the first half's stragglers.
        if i >= ORDERS // 2:
            revoked_now.wait(10)
        time.sleep((i % (ORDERS // 2)) * 0.02)
        return intake.place_order(db, settings, OrderPlaced("orders", f"m-{keys[i]}", keys[i], email,
                                                            customer_id=customer), now=now).status

    def revoke() -> str:
        barrier.wait()
        deadline = time.monotonic() + 10
        while (_scalar(db, "SELECT count(*) FROM verification_sessions WHERE order_id = ANY(:k)", k=keys) < 5
               and time.monotonic() < deadline):
            time.sleep(0.001)
        try:
            return transitions.revoke(db, first, operator="op", reason="document_doubt", now=now).status
        finally:
            revoked_now.set()

    with ThreadPoolExecutor(ORDERS + 1) as pool:
        revoked = pool.submit(revoke)
        placed = list(pool.map(order, range(ORDERS)))
    assert placed == ["accepted"] * ORDERS and revoked.result() == "accepted"

    outcomes = Counter()
    with db.read() as conn:
        for key in keys:
            status = conn.execute(text("SELECT status FROM verification_sessions WHERE order_id = :o"),
                                  {"o": key}).scalar_one()
            reused = conn.execute(text("SELECT count(*) FROM event_log WHERE order_id = :o "
                                       "AND type = 'verification.reused'"), {"o": key}).scalar_one()
            deadline_timers = conn.execute(text("SELECT count(*) FROM countdown_timers WHERE order_id = :o "
                                                "AND kind = 'deadline' AND state = 'scheduled'"), {"o": key}).scalar_one()
            links = conn.execute(text("SELECT count(*) FROM outbox WHERE order_id = :o "
                                      "AND payload->>'topic' = 'customer-emails'"), {"o": key}).scalar_one()
            # Either wholly reused, or wholly a normal session: never verified without the
            # reuse event, never pending without its deadline timer and link email.
            assert (status, reused, deadline_timers, links) in (("verified", 1, 0, 0), ("pending", 0, 1, 1)), key
            outcomes[status] += 1
    assert outcomes["verified"] >= 5  # those committed before the revocation
    assert outcomes["pending"] >= ORDERS // 2  # those placed after it
    assert sum(outcomes.values()) == ORDERS
    assert _scalar(db, "SELECT count(*) FROM verified_customers WHERE session_id = :o", o=first) == 0

    # After the revocation, the customer's next order asks again.
    after = f"race-{tag}-after"
    assert intake.place_order(db, settings, OrderPlaced("orders", f"m-{after}", after, email, customer_id=customer),
                              now=now + timedelta(seconds=1)).status == "accepted"
    assert _scalar(db, "SELECT status FROM verification_sessions WHERE order_id = :o", o=after) == "pending"
