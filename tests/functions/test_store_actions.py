"""Store actions through the real entry points (DESIGN.md 4b, issue 21): the intake, the timer,
the console's actions and the sweeper write them; `request_refund` (the `order-actions`
subscriber) performs them through a connector registered from the test that counts its calls,
and through the outcome webhook, POSTed over HTTP to the strict receiver stand-in
(`devstack.outcome_receiver`), which checks every signature.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections import Counter

import pytest
from sqlalchemy import text

from devstack.outcome_receiver import OutcomeReceiver
from devstack.signing import lightspeed_body, lightspeed_headers, lightspeed_sale
from shared import bootstrap
from shared.console import actions as console_actions
from shared.db import operator_store, reads, sessions, store_actions
from shared.stores import registry
from shared.stores.base import ActionResult, StoreActionKind, StoreRefused, StoreUnavailable
from tests.conftest import LIGHTSPEED_SECRET
from tests.functions.conftest import client_for, count
from tests.functions.test_age_rule_and_binding import approve, opened
from tests.functions.test_subscribers import deliver, smtp  # noqa: F401  (the SMTP inbox fixture)
from tests.functions.test_operator_console import keys  # noqa: F401  (the IAP keys fixture)
from tests.functions.test_log_metrics import labels, selected
from tests.functions.test_timer_and_sweep import fire
from tests.sessions import mark_link_sent
from tests.stores import use_connector

HOOK_SECRET = "whsec_" + base64.b64encode(b"outcome-webhook-test-secret-32by").decode()
ADULT, MINOR = "1990-01-01", "2015-01-01"


class CountingStore:
    """A test-only store connector: records every call, answers as a store that keeps its state
    (an action it already did is `already`), and raises what the test scripts."""

    actions = frozenset({StoreActionKind.HOLD, StoreActionKind.RELEASE, StoreActionKind.CANCEL_AND_REFUND,
                         StoreActionKind.FLAG_FOR_REVIEW})

    def __init__(self, source: str) -> None:
        self.source = source
        self.calls: list[tuple[str, str, dict, str | None]] = []
        self.done: set[tuple[str, str]] = set()
        self.script: list[Exception] = []

    def perform(self, kind, order):
        self.calls.append((str(kind), order.key, dict(order.state), order.reason))
        if self.script:
            raise self.script.pop(0)
        already = (order.key, str(kind)) in self.done
        self.done.add((order.key, str(kind)))
        detail = {StoreActionKind.HOLD: {"hold_ids": [f"hold-{order.key}"]},
                  StoreActionKind.CANCEL_AND_REFUND: {"job_id": f"job-{order.key}"}}.get(kind, {})
        return ActionResult(already=already, detail=detail)

    def kinds(self, key: str) -> list[str]:
        return [kind for kind, order, _, _ in self.calls if order == key]


@pytest.fixture
def receiver():
    with OutcomeReceiver(HOOK_SECRET) as hook:
        yield hook


@pytest.fixture
def shop(app_env, monkeypatch, receiver):
    """The generic source's store connector, and the outcome webhook to the receiver."""
    connector = CountingStore("orders")
    use_connector(monkeypatch, "orders", lambda stores: connector)
    app_env(OUTCOME_WEBHOOK_URL=receiver.url, OUTCOME_WEBHOOK_SECRET=HOOK_SECRET)
    return connector


@pytest.fixture
def intake(shop):
    return client_for("webhook_intake")


@pytest.fixture
def subscriber(shop):
    return client_for("request_refund", "cloudevent")


class Pump:
    """Delivers each `order-actions` message an order's outbox holds to the subscriber, as Pub/Sub
    pushes it (`again=True` delivers the ones already delivered once more, as a redelivery)."""

    def __init__(self, db, subscriber) -> None:
        self.db, self.subscriber = db, subscriber
        self.seen: Counter = Counter()

    def messages(self, order_id: str) -> list[tuple[int, dict]]:
        with self.db.read() as conn:
            return [(row_id, payload) for row_id, payload in conn.execute(text(
                "SELECT id, payload FROM outbox WHERE order_id = :o AND kind = 'publish' "
                "AND payload->>'topic' = 'order-actions' ORDER BY id"), {"o": order_id})]

    def __call__(self, order_id: str, *, again: bool = False) -> list[int]:
        statuses = []
        for row_id, payload in self.messages(order_id):
            if self.seen[row_id] and not again:
                continue
            self.seen[row_id] += 1
            response = deliver(self.subscriber, "order-actions", payload["data"],
                               key=payload["attributes"]["message_key"], order_id=order_id)
            statuses.append(response.status_code)
        return statuses


@pytest.fixture
def pump(db, subscriber):
    return Pump(db, subscriber)


def events(db, order_id, type_):
    with db.read() as conn:
        return [row[0] for row in conn.execute(
            text("SELECT data FROM event_log WHERE order_id = :o AND type = :t ORDER BY id"),
            {"o": order_id, "t": type_})]


def action_states(db, order_id) -> dict[tuple[str, str], str]:
    with db.read() as conn:
        return {(a, c): s for a, c, s in conn.execute(text(
            "SELECT action, connector, state FROM store_actions WHERE order_id = :o"), {"o": order_id})}


def refund_requests(db, order_id) -> int:
    """Refund requests to REFUND_BACKEND (not store actions)."""
    return count(db, "SELECT count(*) FROM outbox WHERE order_id = :o AND payload->>'topic' = 'order-actions' "
                     "AND NOT (payload->'data' ? 'connector')", o=order_id)


def expire(db, order_id):
    """The link went out, the deadline passed: the deadline timer fires through `timer_expiry`."""
    mark_link_sent(db, order_id)
    with db.transaction() as conn:
        conn.execute(text("UPDATE verification_sessions SET deadline = now() - interval '1 minute' "
                          "WHERE order_id = :o"), {"o": order_id})
    body = json.dumps({"v": 1, "order_id": order_id, "kind": "deadline", "reminder_index": 0,
                       "deadline_version": 1}).encode()
    assert fire(client_for("timer_expiry"), body).json["status"] == "accepted"


# ---- the lifecycle ---------------------------------------------------------------------------


def test_placed_is_held_and_verified_is_released_with_the_holds_it_placed(intake, pump, shop, receiver, db,
                                                                           order_id):
    session = opened(intake, db, order_id)
    assert action_states(db, order_id) == {("hold", "orders"): "due", ("hold", "outcome_webhook"): "due"}

    assert pump(order_id) == [200, 200]
    assert shop.kinds(order_id) == ["hold"]
    assert receiver.types(order_id) == ["order.held"]
    assert [e["connector"] for e in events(db, order_id, "store.held")] == ["orders"]

    assert approve(intake, order_id, session, ADULT).json["status"] == "accepted"
    assert pump(order_id) == [200, 200]
    assert shop.kinds(order_id) == ["hold", "release"]
    assert shop.calls[-1][2] == {"hold_ids": [f"hold-{order_id}"]}  # the release names our own holds
    assert receiver.types(order_id) == ["order.held", "order.verified"]
    assert len(events(db, order_id, "store.released")) == 1
    assert receiver.rejected == []
    call = receiver.calls[order_id][1]
    assert call["orderId"] == order_id and call["source"] == "orders" and "@" not in json.dumps(call)


def test_expired_is_cancelled_and_refunded_by_the_store_exactly_once(intake, pump, shop, receiver, db, order_id):
    opened(intake, db, order_id)
    pump(order_id)
    expire(db, order_id)

    assert pump(order_id) == [200, 200]
    assert pump(order_id, again=True) == [200] * 4  # every message redelivered: nothing more happens
    client_for("sweep").post("/", json={})
    pump(order_id)

    assert shop.kinds(order_id) == ["hold", "cancel_and_refund"]
    assert shop.calls[-1][3] == "expired"
    assert receiver.types(order_id) == ["order.held", "order.expired"]
    assert len(events(db, order_id, "store.cancelled")) == 1
    assert [e["by"] for e in events(db, order_id, "refund.completed")] == ["orders"]
    assert refund_requests(db, order_id) == 0  # the store refunds: REFUND_BACKEND is not asked
    with db.read() as conn:
        assert sessions.load_session(conn, order_id)["refund_status"] == "refunded"


def test_an_underage_decline_is_cancelled_and_refunded(intake, pump, shop, receiver, db, order_id):
    session = opened(intake, db, order_id)
    pump(order_id)
    assert approve(intake, order_id, session, MINOR).json["status"] == "accepted"

    pump(order_id)
    assert shop.kinds(order_id) == ["hold", "cancel_and_refund"]
    assert shop.calls[-1][3] == "underage"
    assert receiver.types(order_id) == ["order.held", "order.declined"]
    assert len(events(db, order_id, "refund.completed")) == 1


def test_the_store_cancels_first_the_session_is_cancelled_and_no_cancel_or_refund_is_asked(
        app_env, monkeypatch, receiver, db, pump):
    sales = CountingStore("lightspeed")
    use_connector(monkeypatch, "lightspeed", lambda stores: sales)
    app_env(OUTCOME_WEBHOOK_URL=receiver.url, OUTCOME_WEBHOOK_SECRET=HOOK_SECRET)
    intake = client_for("webhook_intake")
    sale_id = str(uuid.uuid4())
    key = f"lightspeed:{sale_id}"

    for status in ("CLOSED", "VOIDED"):
        body = lightspeed_body(lightspeed_sale(sale_id, status))
        assert intake.post("/webhooks/lightspeed", data=body,
                           headers=lightspeed_headers(LIGHTSPEED_SECRET, body)).status_code == 200
        pump(key)

    with db.read() as conn:
        assert sessions.session_status(conn, key) == "cancelled"
    assert sales.kinds(key) == ["hold"]  # no cancel, no refund
    assert receiver.types(sale_id) == ["order.held", "order.cancelled"]  # the store's own id
    assert {call["source"] for call in receiver.calls[sale_id]} == {"lightspeed"}
    assert refund_requests(db, key) == 0 and events(db, key, "refund.completed") == []


def test_an_operator_verify_after_the_hold_releases_it(intake, pump, shop, receiver, db, order_id):
    opened(intake, db, order_id)
    pump(order_id)
    result = console_actions.run("verify", console_actions.Request(order_id, "staff@example.com",
                                                                   reason="id_checked_in_store"))
    assert result.accepted
    pump(order_id)
    assert shop.kinds(order_id) == ["hold", "release"]
    assert receiver.types(order_id) == ["order.held", "order.verified"]


def test_in_review_flags_the_order(intake, pump, shop, receiver, db, order_id):
    session = opened(intake, db, order_id)
    pump(order_id)
    assert approve(intake, order_id, session, None).json["status"] == "accepted"  # no date of birth
    pump(order_id)
    assert shop.kinds(order_id) == ["hold", "flag_for_review"]
    assert receiver.types(order_id) == ["order.held", "order.in_review"]
    assert len(events(db, order_id, "store.flagged")) == 1


# ---- crashes, refusals, outages --------------------------------------------------------------


def test_a_crash_between_the_call_and_its_record_is_re_driven_and_recorded_once(app_env, monkeypatch, receiver,
                                                                                 db, order_id):
    shop = CountingStore("orders")
    use_connector(monkeypatch, "orders", lambda stores: shop)
    app_env(EMAIL_LEASE="1s")
    intake = client_for("webhook_intake")
    pump = Pump(db, client_for("request_refund", "cloudevent"))
    opened(intake, db, order_id)
    # An attempt claimed the hold, the store placed it, and the attempt died before recording it.
    claim = store_actions.claim_store_action(db, order_id, "hold", "orders", lease_seconds=1)
    assert claim["outcome"] == "claimed"
    shop.perform(StoreActionKind.HOLD, type("Order", (), {"key": order_id, "state": {}, "reason": None})())
    pump.seen.update(row_id for row_id, _ in pump.messages(order_id))  # its message was taken
    assert pump(order_id, again=True) == [500]  # a redelivery within the lease waits
    time.sleep(1.2)

    response = client_for("sweep").post("/", json={})
    assert response.json["redriven"] >= 1
    pump(order_id)

    assert shop.kinds(order_id) == ["hold", "hold"]  # called again: the store says it was done
    held = events(db, order_id, "store.held")
    assert len(held) == 1 and held[0]["already"] is True
    assert action_states(db, order_id) == {("hold", "orders"): "done"}
    pump(order_id, again=True)
    assert shop.kinds(order_id) == ["hold", "hold"]


def test_a_refusal_is_recorded_with_its_code_and_the_order_needs_attention(intake, pump, shop, db, order_id,
                                                                          captured_logs):
    opened(intake, db, order_id)
    pump(order_id)
    expire(db, order_id)
    shop.script.append(StoreRefused("ORDER_ALREADY_FULFILLED"))

    assert pump(order_id) == [200, 200]  # acknowledged: a refusal is not retried
    failed = events(db, order_id, "store.action_failed")
    assert failed == [{"action": "cancel_and_refund", "connector": "orders", "code": "ORDER_ALREADY_FULFILLED"}]
    assert action_states(db, order_id)[("cancel_and_refund", "orders")] == "failed"
    with db.read() as conn:
        assert sessions.load_session(conn, order_id)["refund_status"] == "manual"  # a person refunds
        listed, _ = reads.list_sessions(conn, reads.SessionFilter(attention=True, query=order_id),
                                        bootstrap.container().clock.now())
    assert [row["order_id"] for row in listed] == [order_id]
    pump(order_id, again=True)
    assert shop.kinds(order_id) == ["hold", "cancel_and_refund"]
    # the line the store_action_failures metric counts (infra/monitoring), with its labels, never the store's text
    [line] = selected("store_action_failures", captured_logs)
    assert {k: labels(line)[k] for k in ("store", "action", "code", "order_id")} == {
        "store": "orders", "action": "cancel_and_refund", "code": "ORDER_ALREADY_FULFILLED", "order_id": order_id}


def test_an_unavailable_store_is_retried_after_its_retry_after(intake, pump, shop, db, order_id):
    opened(intake, db, order_id)
    shop.script.append(StoreUnavailable("429", retry_after=120))

    assert pump(order_id) == [500, 200]  # Pub/Sub retries the store's; the webhook went
    with db.read() as conn:
        waits = conn.execute(text("SELECT lease_until - now() FROM store_actions "
                                  "WHERE order_id = :o AND connector = 'orders'"), {"o": order_id}).scalar_one()
    assert waits.total_seconds() > 100  # the store's Retry-After is respected
    assert pump(order_id, again=True)[0] == 500  # redelivered before then: still waits, no call
    assert shop.kinds(order_id) == ["hold"]

    with db.transaction() as conn:  # ... two minutes later
        conn.execute(text("UPDATE store_actions SET lease_until = now() - interval '1 second' "
                          "WHERE order_id = :o"), {"o": order_id})
    assert pump(order_id, again=True)[0] == 200
    assert shop.kinds(order_id) == ["hold", "hold"]
    assert len(events(db, order_id, "store.held")) == 1


def test_the_outcome_webhook_is_retried_with_the_same_webhook_id(intake, pump, receiver, db, order_id):
    receiver.fail_next(503)
    opened(intake, db, order_id)
    assert pump(order_id) == [200, 500]
    with db.transaction() as conn:
        conn.execute(text("UPDATE store_actions SET lease_until = now() WHERE order_id = :o"), {"o": order_id})
    assert pump(order_id, again=True) == [200, 200]
    assert receiver.types(order_id) == ["order.held"]
    assert list(receiver.deliveries.values()) == [1] and receiver.rejected == []
    assert len(events(db, order_id, "store.notified")) == 1


def test_no_store_action_is_written_when_no_connector_is_configured(app_env, db, order_id):
    app_env()
    assert opened(client_for("webhook_intake"), db, order_id)
    assert action_states(db, order_id) == {}
    assert count(db, "SELECT count(*) FROM outbox WHERE order_id = :o AND payload->>'topic' = 'order-actions'",
                 o=order_id) == 0


# ---- order: a release never after a cancel, nor before the hold -------------------------------


def _ask(db, order_id, *actions):
    with db.transaction() as conn:
        for action in actions:
            conn.execute(text("INSERT INTO store_actions (order_id, action, connector, requested_at) "
                              "VALUES (:o, :a, 'orders', now())"), {"o": order_id, "a": action})


def test_a_release_never_runs_after_a_cancel_nor_a_cancel_after_a_release(db, order_id):
    _ask(db, order_id, "cancel_and_refund", "release")
    assert store_actions.claim_store_action(db, order_id, "cancel_and_refund", "orders", 300)["outcome"] == "claimed"
    assert store_actions.claim_store_action(db, order_id, "release", "orders", 300)["outcome"] == "superseded"
    assert store_actions.claim_store_action(db, order_id, "release", "orders", 300)["outcome"] == "skipped"

    other = f"{order_id}-b"
    _ask(db, other, "release", "cancel_and_refund")
    claim = store_actions.claim_store_action(db, other, "release", "orders", 300)
    with db.transaction() as conn:
        assert store_actions.finish_store_action(conn, other, "release", "orders", {})
    assert claim["outcome"] == "claimed"
    assert store_actions.claim_store_action(db, other, "cancel_and_refund", "orders", 300)["outcome"] == "superseded"


def test_a_release_or_cancel_waits_for_the_hold_it_undoes(db, order_id):
    _ask(db, order_id, "hold", "release")
    assert store_actions.claim_store_action(db, order_id, "release", "orders", 300)["outcome"] == "busy"  # hold due
    assert store_actions.claim_store_action(db, order_id, "hold", "orders", 300)["outcome"] == "claimed"
    assert store_actions.claim_store_action(db, order_id, "release", "orders", 300)["outcome"] == "busy"  # in flight
    with db.transaction() as conn:
        assert store_actions.finish_store_action(conn, order_id, "hold", "orders", {"hold_ids": ["h1"]})
    claim = store_actions.claim_store_action(db, order_id, "release", "orders", 300)
    assert claim["outcome"] == "claimed" and claim["state"] == {"hold_ids": ["h1"]}


# ---- what a person sees ----------------------------------------------------------------------


def test_the_order_page_shows_the_store_times_and_actions_and_a_refused_one_can_be_retried(
        app_env, monkeypatch, receiver, keys, tmp_path, db, order_id):
    from tests.functions.test_operator_console import SECRET, as_alice, csrf_of
    from tests.iap_keys import AUDIENCE

    shop = CountingStore("orders")
    use_connector(monkeypatch, "orders", lambda stores: shop)
    from tests.functions.test_operator_console import OPERATORS
    app_env(CONSOLE_SECRET=SECRET, IAP_AUDIENCE=AUDIENCE, IAP_PUBLIC_KEYS_URL=keys.write_public(tmp_path),
            CONSOLE_OPERATORS=OPERATORS)
    intake, console = client_for("webhook_intake"), client_for("operator_console")
    pump = Pump(db, client_for("request_refund", "cloudevent"))
    from tests.functions.test_webhook_intake import post_order
    from datetime import datetime, timedelta, timezone
    placed = (datetime.now(timezone.utc) - timedelta(hours=30)).replace(microsecond=0)
    assert post_order(intake, order_id, createdAt=placed.isoformat()).status_code == 200
    shop.script.append(StoreRefused("HOLD_NOT_ALLOWED"))
    pump(order_id)

    page = console.get(f"/orders/{order_id}", headers=as_alice(keys)).get_data(as_text=True)
    assert "Placed at the store" in page and f"{placed:%Y-%m-%d %H:%M:%S} UTC" in page and "Received" in page
    assert "failed <code>HOLD_NOT_ALLOWED</code>" in page and "Retry store action" in page
    response = console.post(f"/orders/{order_id}/actions/retry-store-action", headers=as_alice(keys),
                            data={"csrf": csrf_of(page), "store_action": "hold:orders"})
    assert response.status_code == 303
    pump(order_id)

    assert shop.kinds(order_id) == ["hold", "hold"]
    assert action_states(db, order_id) == {("hold", "orders"): "done"}
    assert [e["action"] for e in events(db, order_id, "store.action_retried")] == ["hold"]
    page = console.get(f"/orders/{order_id}", headers=as_alice(keys)).get_data(as_text=True)
    assert '<td class="store-state done">held</td>' in page and "Retry store action" not in page
    with db.read() as conn:
        assert conn.execute(text("SELECT store_ordered_at FROM verification_sessions WHERE order_id = :o"),
                            {"o": order_id}).scalar_one() == placed


@pytest.mark.parametrize("with_store", [True, False], ids=["store released", "no store connector"])
def test_the_verified_email_promises_shipping_only_when_the_store_was_told_to_release(
        app_env, monkeypatch, smtp, db, order_id, with_store):
    from tests.functions.test_subscribers import email_job

    inbox, port = smtp
    if with_store:
        use_connector(monkeypatch, "orders", lambda stores: CountingStore("orders"))
    app_env(EMAIL_BACKEND="smtp", SMTP_PORT=str(port), SMTP_STARTTLS="false")
    intake = client_for("webhook_intake")
    session = opened(intake, db, order_id)
    assert approve(intake, order_id, session, ADULT).json["status"] == "accepted"

    email = client_for("send_customer_email", "cloudevent")
    assert deliver(email, "customer-emails", email_job(order_id, "verified"), key="v", order_id=order_id
                   ).status_code == 200
    text_part = inbox.messages[-1].get_body(("plain",)).get_content()
    assert ("prepared for shipping" in text_part) is with_store


def test_the_funnel_counts_refunds_the_store_made(intake, pump, shop, db, order_id):
    from datetime import date

    from shared.handlers import analytics
    from shared.domain.messages import EventMessage

    opened(intake, db, order_id)
    pump(order_id)
    expire(db, order_id)
    pump(order_id)
    with db.read() as conn:
        row = conn.execute(text("SELECT event_id, occurred_at, data FROM event_log WHERE order_id = :o "
                                "AND type = 'refund.completed'"), {"o": order_id}).one()
    before = analytics.funnel(db, date(2000, 1, 1), date(2100, 1, 1))["counts"]
    analytics_client = client_for("record_analytics", "cloudevent")
    message = EventMessage(id=str(row[0]), type="refund.completed", order_id=order_id,
                           occurred_at=row[1].isoformat(), data=row[2])
    assert deliver(analytics_client, "verification-events", message.to_dict(), key=str(row[0]),
                   order_id=order_id).status_code == 200
    after = analytics.funnel(db, date(2000, 1, 1), date(2100, 1, 1))["counts"]
    assert after.get("refunds_by_store", 0) == before.get("refunds_by_store", 0) + 1
    assert after["refunds_completed"] == before.get("refunds_completed", 0) + 1


def test_a_hold_never_runs_once_the_orders_outcome_action_ran(db, order_id):
    # e.g. an operator retries a refused hold after the order was released: it would hold it for good.
    _ask(db, order_id, "hold", "release")
    assert store_actions.claim_store_action(db, order_id, "hold", "orders", 300)["outcome"] == "claimed"
    with db.transaction() as conn:
        assert store_actions.fail_store_action(conn, order_id, "hold", "orders", "HOLD_NOT_ALLOWED")
    assert store_actions.claim_store_action(db, order_id, "release", "orders", 300)["outcome"] == "claimed"
    with db.transaction() as conn:
        operator_store.retry_store_action(conn, order_id, "hold", "orders")
    assert store_actions.claim_store_action(db, order_id, "hold", "orders", 300)["outcome"] == "superseded"


def test_a_store_action_failing_five_times_running_needs_attention(intake, pump, shop, db, order_id):
    opened(intake, db, order_id)
    for _ in range(5):
        shop.script.append(StoreUnavailable("503"))
        assert pump(order_id, again=True)[0] == 500
        with db.transaction() as conn:
            conn.execute(text("UPDATE store_actions SET lease_until = now() WHERE order_id = :o "
                              "AND state = 'leased'"), {"o": order_id})
    with db.read() as conn:
        listed, _ = reads.list_sessions(conn, reads.SessionFilter(attention=True, query=order_id),
                                        bootstrap.container().clock.now())
    assert [row["order_id"] for row in listed] == [order_id]


def test_forgetting_a_customer_cancels_and_refunds_their_held_order_in_the_store(intake, pump, shop, receiver, db,
                                                                                  order_id):
    """Forget (issue 23): an open session closes `cancelled`, reason `erased`, and its store
    action still runs: the held order is cancelled and refunded by the store, never shipped."""
    opened(intake, db, order_id)
    pump(order_id)
    with db.read() as conn:
        email = sessions.load_session(conn, order_id)["customer_email"]

    erasure = console_actions.forget(email, "alice@example.com")

    assert order_id in erasure.cancelled
    assert pump(order_id) == [200, 200]  # the store's cancel and refund, and the outcome webhook
    assert shop.kinds(order_id) == ["hold", "cancel_and_refund"]
    assert [reason for kind, key, _, reason in shop.calls if kind == "cancel_and_refund"] == ["erased"]
    assert refund_requests(db, order_id) == 0  # the store refunds: nothing goes to REFUND_BACKEND
    with db.read() as conn:
        session = sessions.load_session(conn, order_id)
    assert (session["status"], session["customer_email"]) == ("cancelled", None)


def test_a_returning_customers_order_is_released_at_once_and_never_held(intake, pump, shop, receiver, db):
    """Verify once (issue 23) meets the store (issue 21): a returning customer's order opens
    `verified` with no hold; the store is told to release it at once (and the outcome webhook
    says `order.verified`)."""
    from tests.functions.test_verify_once import approve as approve_reuse
    from tests.functions.test_webhook_intake import post_order

    customer, email = f"c-{uuid.uuid4().hex[:8]}", f"r-{uuid.uuid4().hex[:8]}@example.com"
    first, second = f"o-{uuid.uuid4().hex[:10]}", f"o-{uuid.uuid4().hex[:10]}"
    assert post_order(intake, first, customerEmail=email, customerId=customer).json["status"] == "accepted"
    approve_reuse(intake, db, first)
    pump(first)
    assert shop.kinds(first) == ["hold", "release"]

    assert post_order(intake, second, customerEmail=email, customerId=customer).json["status"] == "accepted"
    assert action_states(db, second) == {("release", "orders"): "due", ("release", "outcome_webhook"): "due"}
    assert pump(second) == [200, 200]
    assert shop.kinds(second) == ["release"]
    assert receiver.types(second) == ["order.verified"]
