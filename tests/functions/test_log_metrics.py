"""Each log-based metric of infra/monitoring/metrics/ selects the line the code actually writes.

Each test drives the scenario through the real code path (the function's entry point where
one exists), captures the JSON lines as the functions format them, applies the metric's
filter (tests/logfilter.py: the subset of the Logging query language the files use) and
checks the metric's labels and value can be read from the selected line, and that the
filter selects nothing else of what the scenario logged.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from shared.adapters.tasks import LocalTaskScheduler
from shared.providers.veriff.adapter import LocalVerificationProvider
from shared.db import outbox
from shared.domain.messages import EmailJob
from shared.domain.rows import OutboxKind, OutboxRow
from shared.errors import TransientError
from shared.handlers import emails, relay, timers
from tests import logfilter
from tests.fakes.http_server import FakeHttpServer, Reply
from tests.functions.conftest import client_for
from tests.functions.test_subscribers import deliver, email_job, expire_for_refund, place, smtp  # noqa: F401
from tests.functions.test_webhook_intake import order_request
from tests.integration.test_email_message_error import FailingSender
from tests.integration.test_timers_and_relay import RecordingPublisher, deadline_timer, scheduler  # noqa: F401
from tests.integration.test_timers_and_relay import place as place_at

METRICS = Path(__file__).resolve().parents[2] / "infra" / "monitoring" / "metrics"
NOW = datetime.now(timezone.utc)


def metric(name: str) -> dict:
    return json.loads((METRICS / f"{name}.json").read_text())


def lines_of(stream) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def selected(name: str, stream) -> list[dict]:
    """The captured lines the metric's filter selects, each checked for the metric's labels
    (and value, for a distribution)."""
    config = metric(name)
    chosen = [entry for entry in lines_of(stream) if logfilter.matches(config["filter"], entry)]
    for entry in chosen:
        for label, extractor in config.get("labelExtractors", {}).items():
            value = logfilter.extract(extractor, entry)
            assert isinstance(value, str) and value, (name, label, entry)
        if "valueExtractor" in config:
            assert float(logfilter.extract(config["valueExtractor"], entry)) >= 0
    return chosen


def labels(entry: dict) -> dict:
    return entry["logging.googleapis.com/labels"]


def test_the_filter_evaluator_refuses_what_it_does_not_understand():
    entry = {"severity": "ERROR", "logging.googleapis.com/labels": {"event": "outbox.parked"}}
    assert logfilter.matches('resource.type="cloud_run_revision" AND labels.event="outbox.parked"', entry)
    assert not logfilter.matches('labels.event="outbox.parked" AND severity>=CRITICAL', entry)
    assert not logfilter.matches('labels.event="outbox.failed"', entry)
    assert not logfilter.matches('resource.type="gce_instance"', entry)
    for unsupported in ('labels.event:"outbox"', 'labels.event="a" OR labels.event="b"',
                        'NOT labels.event="a"', 'textPayload=~"x"'):
        try:
            logfilter.matches(unsupported, entry)
        except ValueError:
            continue
        raise AssertionError(f"accepted {unsupported!r}")


def test_every_metric_file_has_a_test_here():
    # store_action_failures: test_store_actions.test_a_refusal_is_recorded_with_its_code_and_the_order_needs_attention
    # effect_failures: test_new_side_effect.test_a_permanent_failure_is_recorded_failed_and_counted
    tested = {"outbox_rows_parked", "relay_failures", "link_not_sent_reviews", "store_action_failures",
              "refund_failures", "emails_failed", "http_answers", "sweep_runs", "outbox_oldest_age",
              "outbox_backlog", "time_to_link", "links_sent", "effect_failures"}
    assert {path.stem for path in METRICS.glob("*.json")} == tested


def test_a_parked_row_is_counted_by_kind_and_error_class(db, scheduler, captured_logs):  # noqa: F811
    order_id = f"dead-{uuid.uuid4().hex[:8]}"
    with db.transaction() as conn:
        outbox.write_effects(conn, [], [OutboxRow(OutboxKind.TASK_CREATE, order_id, {
            "name": "not a valid task name!", "schedule_time": NOW.isoformat(), "body": {"v": 1}})])

    try:
        assert relay.relay(db, scheduler, RecordingPublisher(), order_ids=[order_id]).dead == 1
    finally:  # a row that stays parked would be retried (and parked again) by others' tests
        with db.transaction() as conn:
            conn.exec_driver_sql("DELETE FROM outbox WHERE order_id = %s", (order_id,))

    [line] = selected("outbox_rows_parked", captured_logs)
    assert labels(line)["outbox_kind"] == "task.create" and line["severity"] == "ERROR"
    assert labels(line)["outbox_id"] and labels(line)["error_class"] != "unknown"
    assert selected("relay_failures", captured_logs) == []


def test_a_retried_relay_failure_is_counted_by_kind(db, settings, order_id, captured_logs):
    place_at(db, settings, order_id)

    class Down:
        def publish_batch(self, messages, *, timeout=None):
            return [TransientError("pubsub down", component="pubsub") for _ in messages]

    report = relay.relay(db, LocalTaskScheduler(db, "http://127.0.0.1:9/"), Down(), order_ids=[order_id])

    found = selected("relay_failures", captured_logs)
    assert len(found) == report.failed == 3
    assert {labels(line)["outbox_kind"] for line in found} == {"publish"}
    assert {labels(line)["error_class"] for line in found} == {"TransientError"}
    assert selected("outbox_rows_parked", captured_logs) == []


def test_a_deadline_without_a_sent_link_is_counted(db, settings, order_id, captured_logs):
    place_at(db, settings, order_id, at=NOW - timedelta(days=30), link_sent=False)

    assert timers.fire(db, deadline_timer(order_id), now=NOW).detail == "link_not_sent"

    [line] = selected("link_not_sent_reviews", captured_logs)
    assert labels(line)["order_id"] == order_id


def test_an_email_that_can_never_be_sent_is_counted_by_kind(db, settings, order_id, captured_logs):
    from email.errors import HeaderParseError
    from shared.domain.messages import OrderPlaced
    from shared.handlers import intake

    intake.place_order(db, settings, OrderPlaced("orders", f"m-{order_id}", order_id, "a@example.com"), now=NOW)
    job = EmailJob(order_id=order_id, kind="link")
    result = emails.send_email(db, settings, FailingSender(HeaderParseError("bad header")),
                               LocalVerificationProvider("http://127.0.0.1:9/verify"), job, now=NOW)
    assert result.status == "skipped"

    [line] = selected("emails_failed", captured_logs)
    assert (labels(line)["email_kind"], labels(line)["error_class"]) == ("link", "HeaderParseError")
    assert selected("links_sent", captured_logs) == selected("time_to_link", captured_logs) == []


def test_a_link_email_sent_through_the_subscriber_gives_the_time_since_the_order(
        app_env, db, settings, smtp, order_id, captured_logs):  # noqa: F811 - the smtp fixture
    inbox, port = smtp
    app_env(EMAIL_BACKEND="smtp", SMTP_PORT=str(port), SMTP_STARTTLS="false")
    place(db, settings, order_id)
    client = client_for("send_customer_email", "cloudevent")

    assert deliver(client, "customer-emails", email_job(order_id), key="k1", order_id=order_id).status_code == 200
    assert deliver(client, "customer-emails", email_job(order_id, "reminder"), key="k2",
                   order_id=order_id).status_code == 200

    assert len(inbox.messages) == 2
    [line] = selected("time_to_link", captured_logs)  # the link only, not the reminder
    assert selected("links_sent", captured_logs) == [line]
    assert labels(line)["order_id"] == order_id
    # place() stamps the order at the module's NOW; the send is a moment later.
    assert 0 <= float(labels(line)["seconds_since_order"]) < 600


def test_a_refund_the_api_refuses_is_counted_by_status(app_env, db, settings, order_id, captured_logs):
    with FakeHttpServer(Reply(422, {"error": "already refunded"})) as api:
        app_env(REFUND_BACKEND="http", REFUND_API_URL=api.url + "/refunds", REFUND_API_TOKEN="tok")
        expire_for_refund(db, settings, order_id)
        action = {"v": 1, "order_id": order_id, "action": "refund", "reason": "expired"}
        assert deliver(client_for("request_refund", "cloudevent"), "order-actions", action,
                       key="r", order_id=order_id).status_code == 200

    [line] = selected("refund_failures", captured_logs)
    assert labels(line)["code"] == "422" and labels(line)["order_id"] == order_id


def test_a_refund_that_succeeds_is_not_counted(app_env, db, settings, order_id, captured_logs):
    with FakeHttpServer(Reply(200, {"status": "refunded"})) as api:
        app_env(REFUND_BACKEND="http", REFUND_API_URL=api.url + "/refunds", REFUND_API_TOKEN="tok")
        expire_for_refund(db, settings, order_id)
        action = {"v": 1, "order_id": order_id, "action": "refund", "reason": "expired"}
        assert deliver(client_for("request_refund", "cloudevent"), "order-actions", action,
                       key="r", order_id=order_id).status_code == 200

    assert selected("refund_failures", captured_logs) == []


def test_every_answer_is_counted_by_function_route_and_class(app_env, order_id, captured_logs):
    intake = client_for("webhook_intake")
    body, headers = order_request(order_id)
    assert intake.post("/webhooks/orders", data=body, headers=headers,
                       content_type="application/json").status_code == 200
    bad = dict(headers, **{"webhook-signature": "v1,AAAA"})
    assert intake.post("/webhooks/orders", data=body, headers=bad,
                       content_type="application/json").status_code == 401
    assert intake.get("/no/such/path/1234").status_code == 404

    found = selected("http_answers", captured_logs)
    assert [(labels(x)["function"], labels(x)["route"], labels(x)["status_class"]) for x in found] == [
        ("webhook_intake", "/webhooks/orders", "2xx"),
        ("webhook_intake", "/webhooks/orders", "4xx"),
        ("webhook_intake", "other", "4xx"),  # a raw path (it may carry an id) is never a label
    ]


def test_a_5xx_is_counted_as_such(app_env, captured_logs):
    from devstack.postgres import free_port

    app_env(DATABASE_URL=f"postgresql+pg8000://postgres@127.0.0.1:{free_port()}/verification")
    response = client_for("timer_expiry").post("/", data=json.dumps(
        {"v": 1, "order_id": "o", "kind": "deadline", "reminder_index": 0, "deadline_version": 1}).encode(),
        content_type="application/json")
    assert response.status_code == 503

    [line] = selected("http_answers", captured_logs)
    assert (labels(line)["function"], labels(line)["route"], labels(line)["status_class"], labels(line)["status"]) \
        == ("timer_expiry", "timer_expiry", "5xx", "503")


def test_each_sweep_reports_the_outbox_backlog_and_its_oldest_row(app_env, db, captured_logs):
    order_id = f"old-{uuid.uuid4().hex[:8]}"
    with db.transaction() as conn:  # an undelivered row waiting since an hour (its retry far off)
        outbox.write_effects(conn, [], [OutboxRow(OutboxKind.TASK_DELETE, order_id, {"name": "t-" + order_id})])
        conn.exec_driver_sql("UPDATE outbox SET created_at = now() - interval '1 hour', "
                             "available_at = now() + interval '1 hour' WHERE order_id = %s", (order_id,))

    assert client_for("sweep").post("/", json={}).status_code == 200

    [run] = selected("sweep_runs", captured_logs)
    assert selected("outbox_oldest_age", captured_logs) == selected("outbox_backlog", captured_logs) == [run]
    assert float(labels(run)["outbox_oldest_seconds"]) >= 3600
    assert int(labels(run)["outbox_backlog"]) >= 1
    with db.transaction() as conn:
        conn.exec_driver_sql("DELETE FROM outbox WHERE order_id = %s", (order_id,))

