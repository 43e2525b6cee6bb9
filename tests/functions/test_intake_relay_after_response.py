"""`webhook_intake` answers once the order is committed and relays on the instance's relay
thread: the answer does not wait for the relay (a stuck queue cannot hold the store's
webhook), and the rows are delivered right after, in one pass for the orders that came
together. What the thread never gets to stays in the outbox for the sweeper."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from shared import bootstrap
from shared.config import Settings
from shared.errors import ConfigError
from tests.conftest import base_env
from tests.functions.conftest import client_for
from tests.functions.test_webhook_intake import post_order

LINK_SUBSCRIBERS = ("verification-events=http://127.0.0.1:9/e,customer-emails=http://127.0.0.1:9/m,"
                    "order-actions=http://127.0.0.1:9/a")


def outbox_of(db, *order_ids: str) -> list[tuple[str, str, bool]]:
    with db.read() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT order_id, kind, delivered_at IS NOT NULL FROM outbox WHERE order_id = ANY(:o) ORDER BY id"),
            {"o": list(order_ids)})]


def local_work_of(db, *order_ids: str) -> int:
    with db.read() as conn:
        return conn.execute(text("SELECT count(*) FROM local_tasks WHERE convert_from(body, 'UTF8') LIKE ANY(:o)"),
                            {"o": [f'%"{o}"%' for o in order_ids]}).scalar_one()


def test_the_answer_does_not_wait_for_the_relay_which_delivers_right_after(app_env, db, order_id):
    app_env(LOCAL_SUBSCRIBER_URLS=LINK_SUBSCRIBERS)
    intake = client_for("webhook_intake")
    container = bootstrap.container()
    held, entered = threading.Event(), threading.Event()
    create_batch = container.scheduler.create_batch
    passes: list[list[str]] = []
    relay = container.relay

    def slow_create_batch(tasks, timeout):
        entered.set()
        assert held.wait(10)
        return create_batch(tasks, timeout=timeout)

    def recorded_relay(order_ids, budget_seconds=2.0):
        passes.append(list(order_ids))
        return relay(order_ids, budget_seconds)

    container.scheduler.create_batch = slow_create_batch
    container.relay = recorded_relay
    container.relay_after_response._relay = recorded_relay
    try:
        first = post_order(intake, order_id)
        assert first.status_code == 200 and first.json["status"] == "accepted"
        assert entered.wait(5)  # the relay thread is inside the first pass, held
        others = [f"{order_id}-{n}" for n in range(3)]
        assert all(post_order(intake, o).json["status"] == "accepted" for o in others)
        assert {d for _, _, d in outbox_of(db, order_id, *others)} == {False}  # answered, not yet relayed
    finally:
        held.set()
    assert container.relay_after_response.wait_idle(10)
    assert passes == [[order_id], others]  # what came during a pass went together in the next
    rows = outbox_of(db, order_id, *others)
    assert len(rows) == 20 and all(delivered for _, _, delivered in rows)
    assert local_work_of(db, order_id, *others) == 20  # 8 timer tasks + 12 queued messages


def test_rows_the_relay_thread_never_got_to_are_the_sweepers(app_env, db, order_id):
    app_env(LOCAL_SUBSCRIBER_URLS=LINK_SUBSCRIBERS)
    intake = client_for("webhook_intake")
    container = bootstrap.container()
    container.relay_after_response.close()  # as an instance stopping: it takes no more
    assert post_order(intake, order_id).json["status"] == "accepted"
    assert {d for _, _, d in outbox_of(db, order_id)} == {False}
    sweep = client_for("sweep")
    assert sweep.post("/", headers={"Content-Type": "application/json"}).status_code == 200
    rows = outbox_of(db, order_id)
    assert len(rows) == 5 and all(delivered for _, _, delivered in rows)


def test_with_intake_relay_in_request_the_rows_are_delivered_before_the_answer(app_env, db, order_id):
    app_env(LOCAL_SUBSCRIBER_URLS=LINK_SUBSCRIBERS, INTAKE_RELAY="in_request")
    intake = client_for("webhook_intake")
    assert post_order(intake, order_id).json["status"] == "accepted"
    rows = outbox_of(db, order_id)
    assert len(rows) == 5 and all(delivered for _, _, delivered in rows)
    assert "relay_after_response" not in vars(bootstrap.container())  # no thread was made


def test_an_unknown_intake_relay_is_refused_naming_the_variable(database_url):
    with pytest.raises(ConfigError, match="INTAKE_RELAY"):
        Settings.from_env(base_env(database_url, INTAKE_RELAY="later"))
