"""The numbers the alerts watch, from one query module (shared/db/health.py), the same on the
console's System page and from `python -m shared.operator health`."""

from __future__ import annotations

import json
import logging
import re
import uuid
from datetime import datetime, timedelta, timezone

from sqlalchemy import text

from shared.db import health, outbox
from shared.domain.rows import OutboxKind, OutboxRow
from shared.handlers import relay, timers
from tests.fakes.http_server import FakeHttpServer, Reply
from tests.functions.conftest import client_for
from tests.functions.test_operator_console import as_alice, console, keys  # noqa: F401 - fixtures
from tests.functions.test_subscribers import deliver, expire_for_refund
from tests.integration.test_operator_cli import cli  # noqa: F401 - the fixture
from tests.integration.test_timers_and_relay import RecordingPublisher, deadline_timer
from tests.integration.test_timers_and_relay import place as place_at

NOW = datetime.now(timezone.utc)


def numbers(db) -> health.HealthReport:
    with db.read() as conn:
        return health.report(conn, local_queue=True)


def without_ago(numbers: dict) -> dict:
    """The numbers but the ages (the last sweep's, the oldest undelivered row's): the database's
    clock moves between two readings. The oldest row's age is checked apart, to the second."""
    if numbers.get("last_sweep"):
        numbers["last_sweep"].pop("seconds_ago")
    oldest = numbers.get("outbox", {}).pop("oldest_seconds", None)
    assert oldest is None or oldest >= 3600  # make_trouble's hour-old row
    return numbers


def make_trouble(app_env, db, settings, scheduler) -> dict[str, str]:
    """A parked row, an hour-old undelivered row, a session held for link_not_sent, a refund the
    API refused, a local delivery given up; the ids to clean up."""
    tag = uuid.uuid4().hex[:8]
    ids = {"parked": f"parked-{tag}", "old": f"old-{tag}", "review": f"review-{tag}",
           "refund": f"refund-{tag}", "task": f"gave-up-{tag}", "store": f"shopify:9{int(tag, 16)}"}
    with db.transaction() as conn:
        outbox.write_effects(conn, [], [
            OutboxRow(OutboxKind.TASK_CREATE, ids["parked"], {
                "name": "not a valid task name!", "schedule_time": NOW.isoformat(), "body": {"v": 1}}),
            OutboxRow(OutboxKind.TASK_DELETE, ids["old"], {"name": "t-" + tag})])
        conn.execute(text("UPDATE outbox SET created_at = now() - interval '1 hour', "
                          "available_at = now() + interval '1 hour' WHERE order_id = :o"), {"o": ids["old"]})
        conn.execute(text("INSERT INTO local_tasks (name, queue, url, body, headers, schedule_time, "
                          "next_attempt_at, attempts, done_at, last_status) VALUES (:n, 'customer-emails', "
                          "'http://127.0.0.1:9/', '\\x7b7d', '{}', now(), now(), 5, now(), 'gave_up')"),
                     {"n": ids["task"]})
        # a hold the store refused (its code recorded)
        conn.execute(text("INSERT INTO store_actions (order_id, action, connector, requested_at, state, error_code, "
                          "finished_at) VALUES (:o, 'hold', 'shopify', now(), 'failed', 'HOLD_NOT_ALLOWED', now())"),
                     {"o": ids["store"]})
    assert relay.relay(db, scheduler, RecordingPublisher(), order_ids=[ids["parked"]]).dead == 1
    place_at(db, settings, ids["review"], at=NOW - timedelta(days=30), link_sent=False)
    assert timers.fire(db, deadline_timer(ids["review"]), now=NOW).detail == "link_not_sent"
    with FakeHttpServer(Reply(422, {})) as api:
        app_env(REFUND_BACKEND="http", REFUND_API_URL=api.url + "/refunds", REFUND_API_TOKEN="tok")
        expire_for_refund(db, settings, ids["refund"])
        action = {"v": 1, "order_id": ids["refund"], "action": "refund", "reason": "expired"}
        assert deliver(client_for("request_refund", "cloudevent"), "order-actions", action, key="r",
                       order_id=ids["refund"]).status_code == 200
    return ids


def clean_up(db, ids) -> None:
    with db.transaction() as conn:
        conn.execute(text("DELETE FROM outbox WHERE order_id IN (:a, :b)"), {"a": ids["parked"], "b": ids["old"]})
        conn.execute(text("DELETE FROM local_tasks WHERE name = :n"), {"n": ids["task"]})
        conn.execute(text("DELETE FROM store_actions WHERE order_id = :o"), {"o": ids["store"]})


def test_the_numbers_count_each_kind_of_trouble(app_env, db, settings):
    from shared.adapters.tasks import LocalTaskScheduler

    before = numbers(db)
    ids = make_trouble(app_env, db, settings, LocalTaskScheduler(db, "http://127.0.0.1:9/timer"))
    try:
        after = numbers(db)
        assert after.outbox.parked == before.outbox.parked + 1
        assert after.outbox.undelivered >= before.outbox.undelivered + 1
        assert after.outbox.oldest_seconds >= 3600
        assert after.in_review.get("link_not_sent", 0) == before.in_review.get("link_not_sent", 0) + 1
        assert after.refunds_failed == before.refunds_failed + 1
        assert after.store_actions_failed.get("shopify", 0) == before.store_actions_failed.get("shopify", 0) + 1
        assert after.local_dead_letters.get("customer-emails", 0) == \
            before.local_dead_letters.get("customer-emails", 0) + 1
    finally:
        clean_up(db, ids)
    with db.read() as conn:  # the cloud's functions may not read the local queue's table
        assert health.report(conn, local_queue=False).local_dead_letters is None


def test_the_cli_and_the_system_page_show_the_same_numbers(app_env, db, settings, cli, console, keys):  # noqa: F811
    from shared.adapters.tasks import LocalTaskScheduler

    ids = make_trouble(app_env, db, settings, LocalTaskScheduler(db, "http://127.0.0.1:9/timer"))
    try:
        expected = numbers(db)
        status, out, _ = cli("--json", "health")
        assert status == 0 and without_ago(json.loads(out)) == without_ago(json.loads(json.dumps(expected.to_dict())))
        status, out, _ = cli("health")
        assert status == 0
        assert f"{expected.outbox.parked} parked" in out
        assert f"link_not_sent {expected.in_review['link_not_sent']}" in out
        assert f"refunds failed: {expected.refunds_failed}" in out
        assert f"shopify {expected.store_actions_failed['shopify']}" in out.split("store actions failed:")[1]
        assert f"customer-emails {expected.local_dead_letters['customer-emails']}" in out

        page = console.get("/system", headers=as_alice(keys))
        assert page.status_code == 200
        html = page.get_data(as_text=True)

        def cell(css: str) -> str:
            match = re.search(rf'class="{css}">(?:<a [^>]*>)?([^<]+)', html)
            assert match, css
            return match.group(1).strip()

        assert cell("outbox-parked") == str(expected.outbox.parked)
        assert cell("outbox-undelivered") == str(expected.outbox.undelivered)
        assert cell("refunds-failed") == str(expected.refunds_failed)
        assert cell("failed-shopify") == str(expected.store_actions_failed["shopify"])
        assert cell("review-link_not_sent") == str(expected.in_review["link_not_sent"])
        assert cell("dead-customer-emails") == str(expected.local_dead_letters["customer-emails"])
        assert '<a href="/system">System</a>' in html
    finally:
        clean_up(db, ids)


REPORT_KEYS = {"expired", "expiryFailures", "redriven", "relayed", "relayFailures", "deadLetters", "purged",
               "outboxBacklog", "outboxOldestSeconds", "outboxParked"}


def test_a_sweep_run_shows_as_the_last_sweep_on_the_page_and_in_the_cli(app_env, db, cli, console, keys):  # noqa: F811
    with db.transaction() as conn:  # no sweep has run yet
        conn.execute(text("DELETE FROM sweep_runs"))
    assert numbers(db).last_sweep is None
    assert "last sweep: none recorded" in cli("health")[1]
    assert json.loads(cli("--json", "health")[1])["last_sweep"] is None
    assert "No sweep has run." in console.get("/system", headers=as_alice(keys)).get_data(as_text=True)

    app_env()
    before = datetime.now(timezone.utc)
    response = client_for("sweep").post("/", json={})
    after = datetime.now(timezone.utc)
    assert response.status_code == 200

    last = numbers(db).last_sweep
    assert last is not None and before <= last.finished_at <= after
    assert 0 <= last.seconds <= (after - before).total_seconds() and last.seconds_ago < 60
    assert set(last.report) == REPORT_KEYS
    # the counts it answered with, and the backlog its `sweep done` line logged
    assert {k: last.report[k] for k in response.json if k in last.report} == \
        {k: response.json[k] for k in response.json if k in last.report}
    with db.read() as conn:
        assert conn.execute(text("SELECT count(*) FROM sweep_runs")).scalar_one() == 1  # one row a kind

    status, out, _ = cli("--json", "health")
    shown = json.loads(out)["last_sweep"]
    assert status == 0 and shown["finished_at"] == last.finished_at.isoformat() and shown["report"] == last.report
    assert 0 <= shown["seconds_ago"] < 60
    status, out, _ = cli("health")
    line = next(line for line in out.splitlines() if line.startswith("last sweep:"))
    assert last.finished_at.isoformat(timespec="seconds") in line and " s ago, took " in line
    assert f"relayed {last.report['relayed']}" in line and f"outboxBacklog {last.report['outboxBacklog']}" in line

    html = console.get("/system", headers=as_alice(keys)).get_data(as_text=True)
    assert f'class="sweep-finished">{last.finished_at.isoformat(timespec="seconds")}<' in html
    assert re.search(r'class="sweep-ago">\d+ s<', html)
    for name in REPORT_KEYS:
        assert f'class="sweep-{name}">{last.report[name]}<' in html, name

    # a second run replaces the row
    assert client_for("sweep").post("/", json={}).status_code == 200
    later = numbers(db).last_sweep
    assert later.finished_at > last.finished_at
    with db.read() as conn:
        assert conn.execute(text("SELECT count(*) FROM sweep_runs")).scalar_one() == 1


def test_a_failure_to_record_the_run_does_not_fail_the_sweep(app_env, db, monkeypatch, caplog):
    from sqlalchemy.exc import OperationalError

    def broken(conn, **_):
        raise OperationalError("INSERT INTO sweep_runs", {}, Exception("secret database text"))

    with db.transaction() as conn:
        conn.execute(text("DELETE FROM sweep_runs"))
    monkeypatch.setattr(health, "record_sweep", broken)
    with caplog.at_level(logging.WARNING, logger="functions.sweep"):
        response = client_for("sweep").post("/", json={})
    assert response.status_code == 200 and response.json["status"] == "ok"
    assert set(response.json) >= {"expired", "relayed", "relayFailures", "deadLetters", "purged"}
    warned = [r for r in caplog.records if getattr(r, "labels", {}).get("event") == "sweep.record_failed"]
    # the database layer's class for a lost connection (its text is never logged)
    assert len(warned) == 1 and warned[0].labels["error_class"] == "TransientError"
    assert "secret database text" not in caplog.text
    assert numbers(db).last_sweep is None
