"""One trace per order, on the local stack: the `traceparent` a store sends with its order
webhook is on the log lines of every function the order passes through (the intake, the
timers, the email, analytics and refund subscribers), carried by the outbox into the local
queue's task headers and message attributes, as Cloud Tasks and Pub/Sub carry it."""

from __future__ import annotations

import json
import re
import secrets
import tempfile
import uuid
from pathlib import Path

import requests

from devstack.run import FUNCTIONS
from devstack.signing import order_body, standard_webhook_headers
from tests.conftest import ORDER_SECRET
from tests.e2e.test_local_stack import running_stack, session_of, wait_for
from tests.stack import consecutive_free_ports, smtp_inbox

SPAN = re.compile(r"^[0-9a-f]{16}$")


def json_lines(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def test_one_orders_trace_id_is_on_every_functions_lines(database_url, db):
    trace_id = secrets.token_hex(16)
    order_id = f"trace-{uuid.uuid4().hex[:8]}"
    with smtp_inbox() as (inbox, port), tempfile.TemporaryDirectory(prefix="verification-trace-") as state, \
            running_stack(database_url, port, state, consecutive_free_ports(len(FUNCTIONS)),
                          LOCAL_LOG="json") as url:
        body = order_body(order_id, "buyer@example.com")
        headers = {**standard_webhook_headers(ORDER_SECRET, body),
                   "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
        response = requests.post(url + "/webhooks/orders", data=body, headers=headers, timeout=10)
        assert response.status_code == 200, response.text
        # The window is 6 s: link, reminder, deadline, expiry, the manual refund.
        wait_for(lambda: (session_of(db, order_id) or (None, None))[1] == "manual", "the refund hand-off")
        wait_for(lambda: len(inbox.kinds_for(order_id)) >= 3, "link, reminder and expiry emails")
        def traced() -> dict[str, list[dict]]:
            by_function: dict[str, list[dict]] = {}
            for entry in json_lines(stack_log(state)):
                if entry.get("logging.googleapis.com/trace", "").endswith(trace_id):
                    function = (entry.get("logging.googleapis.com/labels") or {}).get("function", "?")
                    by_function.setdefault(function, []).append(entry)
            return by_function

        wanted = {"webhook_intake", "timer_expiry", "send_customer_email", "record_analytics", "request_refund"}
        wait_for(lambda: wanted <= set(traced()), "every function's lines under the order's trace")
        lines = traced()

    for function in wanted:
        for entry in lines[function]:
            assert SPAN.match(entry["logging.googleapis.com/spanId"]), entry
            assert entry["logging.googleapis.com/labels"].get("order_id") in (order_id, None)
    # Each request has a span of its own under the one trace.
    spans = {entry["logging.googleapis.com/spanId"] for f in wanted for entry in lines[f]}
    assert len(spans) >= len(wanted)
    kinds = {entry["logging.googleapis.com/labels"].get("timer") for entry in lines["timer_expiry"]}
    assert {"reminder", "deadline"} <= kinds
    # Nobody else's order is on this trace.
    orders = {entry["logging.googleapis.com/labels"].get("order_id") for f in lines for entry in lines[f]}
    assert orders <= {order_id, None}


def stack_log(state_dir: str) -> str:
    """Everything the stack wrote (tests.stack.StackProcess: one log file per start)."""
    return "".join(path.read_text(errors="replace") for path in Path(state_dir).glob("stack-*.log"))
