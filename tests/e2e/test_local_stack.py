"""The local stack (`scripts/run-local.sh`'s program) over HTTP, one lifecycle per ending.

The stack runs as a subprocess with every function in its own
functions-framework process, a window of a few seconds, and email going to a
real SMTP server (aiosmtpd) on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
import uuid
from datetime import datetime, timezone

import pytest
import requests
from sqlalchemy import text

from devstack.run import FUNCTIONS
from shared.config import DatabaseSettings
from shared.db.database import Database
from shared.db.engine import make_engine
from devstack.signing import (
    lightspeed_body,
    lightspeed_headers,
    lightspeed_sale,
    order_body,
    standard_webhook_headers,
    veriff_body,
    veriff_headers,
)
from tests.conftest import LIGHTSPEED_SECRET, ORDER_SECRET, VERIFF_API_KEY, VERIFF_SECRET, base_env
from tests.stack import ROOT, StackProcess, consecutive_free_ports, smtp_inbox
from tests.stack import wait_for as wait_until

WAIT = 45  # seconds any one lifecycle may take at most, before the test gives up
DEV_TOKEN = "e2e-console-dev-token-0123456789abcdef"  # CONSOLE_DEV_TOKEN, given (else devstack.run makes one)
RUNNING: dict[str, StackProcess] = {}  # url -> the running stack (its output and state folder)


@contextlib.contextmanager
def running_stack(database_url, smtp_port, state_dir, base, **overrides):
    """devstack.run as a subprocess; its output goes to a file (nobody reads a pipe meanwhile)."""
    env = {**os.environ, **base_env(database_url),
           "LOCAL_BASE_PORT": str(base), "LOCAL_STATE_DIR": state_dir,
           "VERIFICATION_WINDOW": "6s", "REMINDER_OFFSETS": "2s", "SWEEP_GRACE": "2s", "LOCAL_SWEEP_SECONDS": "2",
           "EMAIL_BACKEND": "smtp", "SMTP_PORT": str(smtp_port), "SMTP_STARTTLS": "false",
           "REFUND_BACKEND": "manual", "CONSOLE_DEV_TOKEN": DEV_TOKEN, "PYTHONPATH": str(ROOT), **overrides}
    for name in ("TASKS_BACKEND", "TIMER_URL", "EVENTS_BACKEND"):
        env.pop(name)
    stack = StackProcess(env, state_dir, base).start(timeout=60)
    RUNNING[stack.url] = stack
    try:
        yield stack.url
    finally:
        RUNNING.pop(stack.url, None)
        stack.stop()


@pytest.fixture(scope="module")
def smtp():
    with smtp_inbox() as (inbox, port):
        yield inbox, port


@pytest.fixture(scope="module")
def stack(database_url, smtp):
    inbox, port = smtp
    with tempfile.TemporaryDirectory(prefix="verification-stack-") as state_dir, \
            running_stack(database_url, port, state_dir, consecutive_free_ports()) as url:
        yield url, inbox


def place(url, order_id):
    body = order_body(order_id, "buyer@example.com")
    response = requests.post(url + "/webhooks/orders", data=body,
                             headers=standard_webhook_headers(ORDER_SECRET, body), timeout=10)
    assert response.status_code == 200 and response.json()["status"] == "accepted", response.text


def decide(url, order_id, code):
    body = veriff_body(order_id, code, decision_time=datetime.now(timezone.utc).isoformat())
    response = requests.post(url + "/webhooks/veriff", data=body,
                             headers=veriff_headers(VERIFF_SECRET, VERIFF_API_KEY, body), timeout=10)
    assert response.status_code == 200 and response.json()["status"] == "accepted", response.text


def sale(url, sale_id, status):
    """A Lightspeed X-Series `sale.update` (form-encoded `payload`); the sale's session key."""
    body = lightspeed_body(lightspeed_sale(sale_id, status, email="till@example.com"))
    response = requests.post(url + "/webhooks/lightspeed", data=body,
                             headers=lightspeed_headers(LIGHTSPEED_SECRET, body), timeout=10)
    assert response.status_code == 200 and response.json()["status"] == "accepted", response.text
    return response.json()["orderId"]


def wait_for(check, what):
    return wait_until(check, what, timeout=WAIT)


def events_of(db, order_id):
    with db.read() as conn:
        return list(conn.execute(text("SELECT type FROM event_log WHERE order_id = :o ORDER BY id"),
                                 {"o": order_id}).scalars())


def session_of(db, order_id):
    with db.read() as conn:
        return conn.execute(text("SELECT status, refund_status FROM verification_sessions WHERE order_id = :o"),
                            {"o": order_id}).first()


def link_state(db, order_id):
    with db.read() as conn:
        return conn.execute(text("SELECT state FROM email_sends WHERE order_id = :o AND kind = 'link'"),
                            {"o": order_id}).scalar()


def undelivered(db, order_id):
    with db.read() as conn:
        return conn.execute(text("SELECT count(*) FROM outbox WHERE order_id = :o AND delivered_at IS NULL"),
                            {"o": order_id}).scalar()


def new_order():
    return f"e2e-{uuid.uuid4().hex[:10]}"


def test_expired_with_reminder_and_refund(stack, db):
    url, inbox = stack
    order_id = new_order()
    place(url, order_id)
    wait_for(lambda: session_of(db, order_id) == ("expired", "manual"), "expiry and the manual refund record")
    wait_for(lambda: "expired" in inbox.kinds_for(order_id), "the expiry email")
    wait_for(lambda: undelivered(db, order_id) == 0, "every outbox row delivered")
    assert inbox.kinds_for(order_id) == ["link", "reminder", "expired"]
    events = events_of(db, order_id)
    assert events[:2] == ["order.received", "verification.requested"]
    for earlier, later in [("verification.reminder_due", "verification.expired"),
                           ("verification.expired", "refund.requested"), ("refund.requested", "refund.manual")]:
        assert events.index(earlier) < events.index(later)
    assert events.count("verification.expired") == 1 and events.count("customer.email_sent") == 3


def test_approved(stack, db):
    url, inbox = stack
    order_id = new_order()
    place(url, order_id)
    wait_for(lambda: "link" in inbox.kinds_for(order_id), "the link email")
    decide(url, order_id, 9001)
    wait_for(lambda: "verified" in inbox.kinds_for(order_id), "the verified email")
    time.sleep(7)  # past the deadline: the cancelled timers must not fire
    assert session_of(db, order_id) == ("verified", None)
    events = events_of(db, order_id)
    assert "verification.approved" in events and "verification.expired" not in events
    assert "reminder" not in inbox.kinds_for(order_id) or events.index("verification.reminder_due") < events.index(
        "verification.approved")


def test_declined_requests_a_refund(stack, db):
    url, inbox = stack
    order_id = new_order()
    place(url, order_id)
    # A decision binds only to the provider session the link email created (issue 10 item 2).
    wait_for(lambda: "link" in inbox.kinds_for(order_id), "the link email")
    decide(url, order_id, 9102)
    wait_for(lambda: session_of(db, order_id) == ("declined", "manual"), "decline and refund record")
    wait_for(lambda: "declined" in inbox.kinds_for(order_id), "the declined email")
    events = events_of(db, order_id)
    assert events.index("verification.declined") < events.index("refund.requested") < events.index("refund.manual")


def test_cancelled_by_the_store(stack, db):
    """A Lightspeed sale voided: its session cancelled; a generic order with the same id is another
    order, with its own link email, and the void leaves it alone (issue 10 item 5)."""
    url, inbox = stack
    order_id = new_order()
    place(url, order_id)
    key = sale(url, order_id, "CLOSED")
    assert key == f"lightspeed:{order_id}"
    # Messages are asynchronous: both customers get a link, each naming the store's own id.
    wait_for(lambda: link_state(db, key) == "sent" and link_state(db, order_id) == "sent", "both link emails")
    assert inbox.kinds_for(order_id).count("link") == 2
    sale(url, order_id, "VOIDED")
    time.sleep(7)
    assert session_of(db, key) == ("cancelled", None)
    events = events_of(db, key)
    assert "order.cancelled" in events and "verification.expired" not in events
    assert "order.cancelled" not in events_of(db, order_id) and session_of(db, order_id)[0] != "cancelled"


def test_funnel_counts_the_lifecycles(stack, db):
    """Runs last in this module: the four lifecycles above are in today's funnel."""
    from shared.handlers.analytics import funnel
    today = datetime.now(timezone.utc).date()
    report = wait_for(lambda: (lambda r: r if r["counts"].get("refunds_requested", 0) >= 2 else None)(
        funnel(db, today, today)), "analytics to count the refunds")
    counts = report["counts"]
    assert counts["orders_received"] >= 4 and counts["links_sent"] >= 4
    assert counts["verified"] >= 1 and counts["declined"] >= 1 and counts["expired"] >= 1


@pytest.fixture
def own_database(fresh_database):
    """A database of its own, so no other running stack's dispatcher or sweeper touches it."""
    database = Database(make_engine(DatabaseSettings.from_env(base_env(fresh_database))))
    yield fresh_database, database
    database.engine.dispose()


def test_stopping_and_starting_the_stack_loses_no_timer(own_database, smtp):
    with tempfile.TemporaryDirectory(prefix="verification-restart-") as state_dir:
        stop_and_start_losing_no_timer(own_database, smtp, state_dir)


def stop_and_start_losing_no_timer(own_database, smtp, state_dir):
    url_db, db = own_database
    inbox, port = smtp
    order_id = new_order()
    # The sweeper is slowed to once an hour: only the timers themselves can move this order.
    slow_sweeper = {"VERIFICATION_WINDOW": "8s", "REMINDER_OFFSETS": "5s", "LOCAL_SWEEP_SECONDS": "3600"}
    base = consecutive_free_ports()  # the same ports after the restart, as scripts/run-local.sh does
    with running_stack(url_db, port, state_dir, base, **slow_sweeper) as url:
        place(url, order_id)
        wait_for(lambda: "link" in inbox.kinds_for(order_id), "the link email")
        # ... and recorded as sent (a session whose link is not known to be sent is never expired)
        wait_for(lambda: link_state(db, order_id) == "sent", "the link email recorded as sent")
    time.sleep(9)  # the stack is down while both timers come due
    assert session_of(db, order_id) == ("pending", None)
    with running_stack(url_db, port, state_dir, base, **slow_sweeper):
        wait_for(lambda: session_of(db, order_id) == ("expired", "manual"), "the deadline timer after the restart")
        wait_for(lambda: "expired" in inbox.kinds_for(order_id), "the expiry email")
    events = events_of(db, order_id)
    # Both timers are overdue at the restart and are delivered together: if the deadline wins,
    # the reminder finds the session closed and rightly does nothing. Never twice, though.
    assert events.count("verification.reminder_due") <= 1 and events.count("verification.expired") == 1
    assert actors_of(db, order_id, "verification.expired") == ["timer"]


def actors_of(db, order_id, type_):
    with db.read() as conn:
        return list(conn.execute(text("SELECT actor FROM event_log WHERE order_id = :o AND type = :t"),
                                 {"o": order_id, "t": type_}).scalars())


def test_the_emailed_link_opens_the_local_provider_page_and_the_console_shows_it(stack, db):
    url, inbox = stack
    order_id = new_order()
    place(url, order_id)
    wait_for(lambda: "link" in inbox.kinds_for(order_id), "the link email")
    text_ = inbox.texts_for(order_id)[0]
    link = re.search(r"http://127\.0\.0\.1:\d+/verify/[\w-]+", text_).group(0)
    browser = requests.Session()
    page = browser.get(link, timeout=10)
    assert page.status_code == 200 and order_id in page.text
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    sent = browser.post(link, data={"csrf": token, "decision": "approved", "dob": "1990-01-01"}, timeout=10)
    assert "answered 200 accepted" in sent.text
    wait_for(lambda: session_of(db, order_id) == ("verified", None), "the provider page's decision")
    console = f"http://127.0.0.1:{int(url.rsplit(':', 1)[1]) + FUNCTIONS['operator_console'][1]}"
    # The customer's browser went through the provider page without the console's sign-in: the
    # console itself asks for the URL the stack printed, which signs the browser in.
    refused = browser.get(f"{console}/orders/{order_id}", timeout=10)
    assert refused.status_code == 403 and order_id not in refused.text
    printed = re.search(r"operator console\s+(\S+)", RUNNING[url].log_text()).group(1)
    assert printed == f"{console}/sessions?dev_token={DEV_TOKEN}"
    signed_in = browser.get(printed, timeout=10, allow_redirects=False)
    assert signed_in.status_code == 303 and signed_in.headers["Location"] == "/sessions"
    assert DEV_TOKEN not in signed_in.headers["Set-Cookie"] and browser.cookies.get("console_dev")
    story = browser.get(f"{console}/orders/{order_id}", timeout=10)
    assert story.status_code == 200 and "verification.approved" in story.text
    assert "signed in as dev@localhost" in story.text
    assert DEV_TOKEN not in RUNNING[url].log_text().replace(printed, "")  # the banner alone shows it


def test_the_local_stack_tells_its_outcome_webhook_receiver(stack, db):
    # The default local setup signs outcome webhooks to the strict receiver it starts (base + 9).
    from devstack.run import OUTCOME_RECEIVER_OFFSET

    url, inbox = stack
    order_id = new_order()
    receiver = f"http://127.0.0.1:{int(url.rsplit(':', 1)[1]) + OUTCOME_RECEIVER_OFFSET}/calls"
    place(url, order_id)
    wait_for(lambda: "link" in inbox.kinds_for(order_id), "the link email")
    wait_for(lambda: [c["type"] for c in requests.get(receiver, timeout=5).json()["calls"].get(order_id, [])]
             == ["order.held"], "the hold's outcome webhook")
    decide(url, order_id, 9001)
    wait_for(lambda: [c["type"] for c in requests.get(receiver, timeout=5).json()["calls"].get(order_id, [])]
             == ["order.held", "order.verified"], "the verified outcome webhook")
    assert requests.get(receiver, timeout=5).json()["rejected"] == []
    assert "store.notified" in events_of(db, order_id)


def test_the_local_stack_holds_releases_and_cancels_at_its_store_stand_ins(stack, db):
    """By default the stack runs the Shopify and WooCommerce stand-ins (base + 10, + 11) and points
    the connectors at them; each store call is a story line in the terminal."""
    import json

    from devstack.run import SHOPIFY_STANDIN_OFFSET
    from devstack.signing import shopify_headers, shopify_order, woocommerce_body, woocommerce_headers, woocommerce_order

    url, _ = stack
    running = RUNNING[url]
    dev = json.loads((running.state_dir / "dev-secrets.json").read_text())
    shop_number, woo_number = (5_000_000_000_000 + uuid.uuid4().int % 10**12 for _ in range(2))
    body = json.dumps(shopify_order(shop_number, "buyer@example.com")).encode()
    assert requests.post(url + "/webhooks/shopify", data=body, timeout=10,
                         headers=shopify_headers(dev["SHOPIFY_CLIENT_SECRET"], body)).status_code == 200
    body = woocommerce_body(woocommerce_order(woo_number, "processing"))
    headers = woocommerce_headers(dev["WOOCOMMERCE_WEBHOOK_SECRET"], body, "order.created")
    assert requests.post(url + "/webhooks/woocommerce", data=body, headers=headers, timeout=10).status_code == 200
    shop_key, woo_key = f"shopify:{shop_number}", f"woocommerce:{woo_number}"

    counts = f"http://127.0.0.1:{running.base_port + SHOPIFY_STANDIN_OFFSET}/_standin/counts"

    def mutations(name):
        return [m for m in requests.get(counts, timeout=5).json()["mutations"]
                if m["name"] == name and m["order"] == f"gid://shopify/Order/{shop_number}"]

    wait_for(lambda: mutations("fulfillmentOrderHold"), "the Shopify hold at the stand-in")
    wait_for(lambda: f"order {shop_key}: hold placed" in running.log_text(), "the Shopify hold's story line")
    wait_for(lambda: f"order {woo_key}: hold placed" in running.log_text(), "the WooCommerce hold's story line")
    decide(url, shop_key, 9001)
    wait_for(lambda: mutations("fulfillmentOrderReleaseHold"), "the Shopify release at the stand-in")
    wait_for(lambda: f"order {shop_key}: released" in running.log_text(), "the release's story line")
    # The WooCommerce order is left to expire (a 6 s window): cancelled and refunded at the store.
    wait_for(lambda: f"order {woo_key}: cancelled and refunded" in running.log_text(), "the cancel's story line")
    assert f"woocommerce stand-in: order {woo_key}: create_refund" in running.log_text()
    assert mutations("orderCancel") == []
