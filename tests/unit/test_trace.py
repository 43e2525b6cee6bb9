"""One trace per order (shared/trace.py): the context is read from a request or a message,
stored with every outbox row written under it, handed to the task or message, and on every
log line; an ERROR with a stack is what Error Reporting groups, without the error's text."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timedelta, timezone

import pytest

from shared import trace as tracing
from shared.domain.effects import Effects
from shared.domain.model import Email, Event, TimerKind, TimerSpec
from shared.errors import PermanentError
from shared.handlers.relay import _message, _timer_task
from shared.log import REPORTED_ERROR_EVENT, JsonFormatter, bound

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = f"00-{TRACE}-b7ad6b7169203331-01"
NOW = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)


def test_a_w3c_traceparent_is_continued_with_a_span_of_its_own():
    context = tracing.continued({"traceparent": PARENT})
    assert context.trace_id == TRACE and context.sampled
    assert context.span_id != "b7ad6b7169203331" and len(context.span_id) == 16


def test_cloud_runs_header_is_read_when_there_is_no_traceparent():
    context = tracing.from_carrier({"X-Cloud-Trace-Context": f"{TRACE.upper()}/12345;o=1"})
    assert (context.trace_id, context.span_id) == (TRACE, f"{12345:016x}")
    both = tracing.from_carrier({"traceparent": PARENT, "X-Cloud-Trace-Context": "1" * 32 + "/1"})
    assert both.trace_id == TRACE


@pytest.mark.parametrize("value", ["", "garbage", f"00-{'0' * 32}-b7ad6b7169203331-01",
                                   f"00-{TRACE}-{'0' * 16}-01", f"ff-{TRACE}-b7ad6b7169203331-01",
                                   f"00-{TRACE.upper()}-b7ad6b7169203331-01", "00-abc-def-01"])
def test_a_malformed_traceparent_starts_a_fresh_trace(value):
    assert tracing.parse_traceparent(value) is None
    context = tracing.continued({"traceparent": value})
    assert context.trace_id != TRACE and len(context.trace_id) == 32


def effects_under(context) -> Effects:
    fx = Effects("o-1", NOW, "req-1")
    with tracing.activated(context):
        fx.email(Email.LINK)
        fx.event(Event.ORDER_RECEIVED)
        fx.schedule(TimerSpec(TimerKind.DEADLINE, 0, NOW + timedelta(hours=72), 1))
        fx.unschedule("t-old")
    return fx


def test_every_outbox_row_written_under_a_trace_carries_it_to_its_task_or_message():
    context = tracing.continued({"traceparent": PARENT})
    fx = effects_under(context)

    published = [row.payload for row in fx.outbox if row.kind == "publish"]
    assert len(published) == 2
    for payload in published:
        assert _message(payload).attributes["traceparent"] == context.traceparent()
    [create] = [row.payload for row in fx.outbox if row.kind == "task.create"]
    assert _timer_task(create).headers == {"traceparent": context.traceparent()}
    assert create["body"].get("traceparent") is None  # the timer's body is unchanged


def test_outside_a_trace_nothing_is_added():
    fx = effects_under(None)
    assert all("traceparent" not in row.payload.get("attributes", {}) for row in fx.outbox)
    [create] = [row.payload for row in fx.outbox if row.kind == "task.create"]
    assert "headers" not in create and _timer_task(create).headers == {}


def test_a_stored_task_sends_on_its_trace_context_and_nothing_else():
    payload = {"name": "t", "schedule_time": NOW.isoformat(), "body": {"v": 1},
               "headers": {"traceparent": PARENT, "Authorization": "Bearer x"}}
    assert _timer_task(payload).headers == {"traceparent": PARENT}
    assert _timer_task({**payload, "headers": {"traceparent": "junk"}}).headers == {}


def record(level, message="boom", exc_info=None) -> logging.LogRecord:
    return logging.LogRecord("shared.x", level, __file__, 1, message, None, exc_info)


def test_every_line_under_a_trace_carries_cloud_loggings_trace_and_span(monkeypatch):
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "acme-verify")
    context = tracing.continued({"traceparent": PARENT})
    with tracing.activated(context):
        line = json.loads(JsonFormatter().format(record(logging.INFO)))
    assert line["logging.googleapis.com/trace"] == f"projects/acme-verify/traces/{TRACE}"
    assert line["logging.googleapis.com/spanId"] == context.span_id
    assert line["logging.googleapis.com/trace_sampled"] is True
    outside = json.loads(JsonFormatter().format(record(logging.INFO)))
    assert "logging.googleapis.com/trace" not in outside


def raised(exc: BaseException):
    try:
        raise exc
    except BaseException:
        return sys.exc_info()


def test_an_error_with_a_stack_is_reported_without_its_message_text():
    class DriverError(Exception):
        pass

    secret = "CONTEXT: JSON data, line 1: {\"email\": \"private@example.com\"}"
    with bound(function="send_customer_email"):
        line = json.loads(JsonFormatter().format(record(logging.ERROR, "failed", raised(DriverError(secret)))))
    assert line["@type"] == REPORTED_ERROR_EVENT
    stack = line["stack_trace"]
    assert stack.startswith("Traceback (most recent call last):\n  File ")
    assert stack.rstrip().endswith("DriverError") and "in raised" in stack
    assert line["serviceContext"] == {"service": "send_customer_email"}
    assert secret not in json.dumps(line) and "private@example.com" not in json.dumps(line)


def test_our_own_errors_keep_their_message_which_names_fields_only():
    line = json.loads(JsonFormatter().format(
        record(logging.ERROR, "failed", raised(PermanentError("orderId is required", field="orderId")))))
    assert line["stack_trace"].rstrip().endswith("shared.errors.PermanentError: orderId is required")


def test_warnings_and_errors_without_a_stack_are_not_error_reports():
    warning = json.loads(JsonFormatter().format(record(logging.WARNING, "retrying", raised(ValueError("x")))))
    plain = json.loads(JsonFormatter().format(record(logging.ERROR, "no stack")))
    for line in (warning, plain):
        assert "@type" not in line and "stack_trace" not in line
    assert "exception" in warning  # the redacted chain stays, as before
