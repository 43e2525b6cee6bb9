"""A new side effect of a transition is one module and two lines (issue 22): a test-only effect
(`tests/acme_effect.py`) registered with its one line in `shared.effects.registry.EFFECTS`, and
named in the deadline's `effects=(...)`, and no other file edited. Through the real entry points
(`timer_expiry`, the `order-actions` subscriber `request_refund`, `sweep`) and real PostgreSQL:
its claim commits with the expiry, it is performed once, a duplicate delivery performs nothing,
an attempt that died after its claim (or failed) is re-driven by the sweep and performed once,
and a permanent failure is recorded and counted by the health numbers."""

from __future__ import annotations

import html
import json
from dataclasses import replace

import pytest
from sqlalchemy import text

from shared.console import csrf
from shared.db import effect_runs, health
from shared.domain import model
from shared.effects import EffectFailed, registry
from shared.handlers import timers
from tests import acme_effect
from tests.functions.conftest import client_for
from tests.functions.test_store_actions import expire
from tests.functions.test_operator_console import (  # noqa: F401  (console, keys: its fixtures)
    ALICE,
    SECRET,
    as_alice,
    console,
    csrf_of,
    keys,
    order_ids_on,
    search,
)
from tests.functions.test_log_metrics import labels, selected
from tests.functions.test_subscribers import deliver
from tests.functions.test_timer_and_sweep import fire
from tests.functions.test_webhook_intake import post_order
from tests.sessions import mark_link_sent

NAME = acme_effect.NAME


@pytest.fixture
def acme(app_env, monkeypatch):
    monkeypatch.setitem(registry.EFFECTS, NAME, acme_effect.EFFECT)  # the one registry line
    # The transition that asks for it: `DEADLINE = Transition(..., effects=("acme_notice",))` in model.py.
    monkeypatch.setattr(timers, "DEADLINE", replace(model.DEADLINE, effects=(NAME,)))
    acme_effect.CALLS.clear()
    acme_effect.SCRIPT.clear()
    yield
    acme_effect.CALLS.clear()
    acme_effect.SCRIPT.clear()


class EffectPump:
    """Delivers an order's side-effect messages from its outbox to `request_refund`, as Pub/Sub
    pushes them; each outbox row once, unless `again` (a redelivery)."""

    def __init__(self, db) -> None:
        self.db, self.subscriber, self.seen = db, client_for("request_refund", "cloudevent"), set()

    def __call__(self, order_id: str, *, again: bool = False) -> list[int]:
        with self.db.read() as conn:
            rows = conn.execute(text(
                "SELECT id, payload FROM outbox WHERE order_id = :o AND kind = 'publish' "
                "AND payload->>'topic' = 'order-actions' AND payload->'data' ? 'effect' ORDER BY id"),
                {"o": order_id}).all()
        statuses = []
        for row_id, payload in rows:
            if row_id in self.seen and not again:
                continue
            self.seen.add(row_id)
            statuses.append(deliver(self.subscriber, "order-actions", payload["data"],
                                    key=payload["attributes"]["message_key"], order_id=order_id).status_code)
        return statuses


def run(db, order_id):
    with db.read() as conn:
        row = conn.execute(text("SELECT state, attempts, error_code, reason FROM effect_runs "
                                "WHERE order_id = :o AND effect = :e"), {"o": order_id, "e": NAME}).one_or_none()
    return tuple(row) if row else None


def events(db, order_id, type_):
    with db.read() as conn:
        return [row[0] for row in conn.execute(text(
            "SELECT data FROM event_log WHERE order_id = :o AND type = :t ORDER BY id"), {"o": order_id, "t": type_})]


def lease_passes(db, order_id):
    """A lease's worth of time passes: beyond the run's lease (or its retry's backoff), and beyond
    the sweep's last re-drive of it (a run is re-driven at most once a lease)."""
    with db.transaction() as conn:
        conn.execute(text("UPDATE effect_runs SET lease_until = now() - interval '1 second', "
                          "redriven_at = redriven_at - interval '1 day' "
                          "WHERE order_id = :o AND effect = :e"), {"o": order_id, "e": NAME})


def sweep():
    response = client_for("sweep").post("/", json={})
    assert response.status_code == 200
    return response.json


def test_an_expiry_performs_its_new_side_effect_once(acme, db, order_id):
    post_order(client_for("webhook_intake"), order_id)
    assert run(db, order_id) is None  # the new session asks for nothing

    expire(db, order_id)
    # The claim committed with the expiry, its message with it.
    assert run(db, order_id) == ("due", 0, None, "expired")
    pump = EffectPump(db)
    assert pump(order_id) == [200]
    assert acme_effect.calls(order_id) == [("expired", 1)]
    assert acme_effect.CALLS[0][3] == f"effect-{NAME}-{order_id}"  # stable across attempts
    assert run(db, order_id) == ("done", 1, None, "expired")
    assert [e["effect"] for e in events(db, order_id, "effect.done")] == [NAME]

    # A duplicate delivery performs nothing more; nor does a sweep (nothing left to re-drive).
    assert pump(order_id, again=True) == [200]
    sweep()
    assert pump(order_id) == []
    assert acme_effect.calls(order_id) == [("expired", 1)]
    assert len(events(db, order_id, "effect.done")) == 1


def test_an_attempt_that_died_after_its_claim_is_redriven_by_the_sweep_and_performed_once(acme, db, settings,
                                                                                          order_id):
    post_order(client_for("webhook_intake"), order_id)
    expire(db, order_id)
    # An attempt claims the run and dies before `perform` (its instance killed): the lease is left.
    assert effect_runs.claim_effect_run(db, order_id, NAME, 300.0)["outcome"] == "claimed"
    pump = EffectPump(db)
    assert pump(order_id) == [500]  # the message meanwhile: the lease is held, Pub/Sub retries
    assert acme_effect.calls(order_id) == []
    sweep()
    assert pump(order_id) == []  # within its lease the sweep re-drives nothing for it
    assert run(db, order_id) == ("leased", 1, None, "expired")

    lease_passes(db, order_id)
    assert sweep()["redriven"] >= 1
    assert pump(order_id) == [200]  # the sweep's message
    assert acme_effect.calls(order_id) == [("expired", 2)]  # the second claim is the fencing number
    assert run(db, order_id) == ("done", 2, None, "expired")
    sweep()
    assert pump(order_id) == [] and pump(order_id, again=True) == [200, 200]
    assert acme_effect.calls(order_id) == [("expired", 2)]


def test_a_failed_attempt_is_retried_after_its_backoff_and_performed_once(acme, db, order_id):
    post_order(client_for("webhook_intake"), order_id)
    expire(db, order_id)
    acme_effect.SCRIPT.append(ConnectionError("the far side is down"))
    pump = EffectPump(db)
    assert pump(order_id) == [500]  # transient: Pub/Sub retries
    assert run(db, order_id) == ("leased", 1, "ConnectionError", "expired")
    assert pump(order_id, again=True) == [500]  # within the backoff: not performed
    assert len(acme_effect.calls(order_id)) == 1

    lease_passes(db, order_id)
    assert sweep()["redriven"] >= 1
    assert pump(order_id) == [200]
    assert acme_effect.calls(order_id) == [("expired", 1), ("expired", 2)]
    assert run(db, order_id) == ("done", 2, None, "expired")
    assert len(events(db, order_id, "effect.done")) == 1


def test_a_permanent_failure_is_recorded_failed_and_counted(acme, db, order_id, captured_logs):
    with db.read() as conn:
        before = health.report(conn, local_queue=False).effects_failed.get(NAME, 0)
    post_order(client_for("webhook_intake"), order_id)
    expire(db, order_id)
    acme_effect.SCRIPT.append(EffectFailed("acme_refused"))
    pump = EffectPump(db)
    assert pump(order_id) == [200]
    assert run(db, order_id) == ("failed", 1, "acme_refused", "expired")
    assert [(e["effect"], e["code"]) for e in events(db, order_id, "effect.failed")] == [(NAME, "acme_refused")]
    # The alert's log-based metric (infra/monitoring/metrics/effect_failures.json) counts it once.
    [line] = selected("effect_failures", captured_logs)
    assert labels(line)["effect"] == NAME and labels(line)["code"] == "acme_refused"
    assert labels(line)["order_id"] == order_id and line["severity"] == "WARNING"
    with db.read() as conn:
        numbers = health.report(conn, local_queue=False)
    assert numbers.effects_failed[NAME] == before + 1
    assert numbers.to_dict()["effects_failed"][NAME] == before + 1

    # Never re-driven, never performed again.
    lease_passes(db, order_id)
    sweep()
    assert pump(order_id) == [] and pump(order_id, again=True) == [200]
    assert len(acme_effect.calls(order_id)) == 1


def test_retries_used_up_are_a_failure_recorded_by_the_error_class(acme, db, order_id):
    post_order(client_for("webhook_intake"), order_id)
    expire(db, order_id)
    acme_effect.SCRIPT.extend([TimeoutError("1"), TimeoutError("2"), TimeoutError("3")])
    pump = EffectPump(db)
    statuses = pump(order_id)
    for _ in range(acme_effect.EFFECT.max_attempts - 1):
        lease_passes(db, order_id)
        sweep()
        statuses += pump(order_id)
    assert statuses == [500, 500, 200]  # the third and last attempt records the failure
    assert run(db, order_id) == ("failed", 3, "TimeoutError", "expired")
    assert [e["code"] for e in events(db, order_id, "effect.failed")] == ["TimeoutError"]
    assert [attempt for _, attempt in acme_effect.calls(order_id)] == [1, 2, 3]


def test_a_transition_naming_an_unregistered_effect_is_refused_and_changes_nothing(app_env, db, monkeypatch,
                                                                                   order_id):
    monkeypatch.setattr(timers, "DEADLINE", replace(model.DEADLINE, effects=("nobody_registered",)))
    post_order(client_for("webhook_intake"), order_id)
    mark_link_sent(db, order_id)
    with db.transaction() as conn:
        conn.execute(text("UPDATE verification_sessions SET deadline = now() - interval '1 minute' "
                          "WHERE order_id = :o"), {"o": order_id})
    body = json.dumps({"v": 1, "order_id": order_id, "kind": "deadline", "reminder_index": 0,
                       "deadline_version": 1}).encode()
    assert fire(client_for("timer_expiry"), body).status_code == 500  # Cloud Tasks retries: nothing lost silently
    with db.read() as conn:
        assert conn.execute(text("SELECT status FROM verification_sessions WHERE order_id = :o"),
                            {"o": order_id}).scalar_one() == "pending"
    assert run(db, order_id) is None


def test_the_effect_message_parses_and_an_unknown_effect_is_ignored(acme, db, order_id):
    response = deliver(client_for("request_refund", "cloudevent"), "order-actions",
                       {"v": 1, "order_id": order_id, "effect": "nobody_registered"}, key="k", order_id=order_id)
    assert response.status_code == 200
    assert json.dumps(acme_effect.CALLS) == "[]"


# ---- what staff see and do: "needs attention", the order page, the retry ----------------------


def relayed(db, order_id):
    """The order's outbox rows delivered (this test's relay has no Pub/Sub to publish to)."""
    with db.transaction() as conn:
        conn.execute(text("UPDATE outbox SET delivered_at = now(), attempts = 0 WHERE order_id = :o "
                          "AND delivered_at IS NULL"), {"o": order_id})


def failed_for_good(db, order_id):
    post_order(client_for("webhook_intake"), order_id)
    expire(db, order_id)
    acme_effect.SCRIPT.append(EffectFailed("acme_refused"))
    pump = EffectPump(db)
    assert pump(order_id) == [200]
    assert run(db, order_id) == ("failed", 1, "acme_refused", "expired")
    return pump


def test_a_failed_effect_needs_attention_and_staff_retry_it_once_through_the_console(acme, console, keys, db,
                                                                                     order_id):
    pump = failed_for_good(db, order_id)
    relayed(db, order_id)  # no delivery left failing: the failed run alone puts it in "needs attention"
    assert order_ids_on(search(console, keys, q=order_id, attention="1").get_data(as_text=True)) == [order_id]

    page = console.get(f"/orders/{order_id}", headers=as_alice(keys))
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert '<table class="effect-runs">' in html and "<td>acme_notice</td>" in html
    assert '<td class="effect-state failed">failed <code>acme_refused</code></td>' in html
    assert f'action="/orders/{order_id}/actions/retry-effect"' in html

    response = console.post(f"/orders/{order_id}/actions/retry-effect", headers=as_alice(keys),
                            data={"csrf": csrf_of(html), "effect": NAME})
    assert response.status_code == 303
    assert "outcome=accepted" in response.headers["Location"]
    # Due again with a fresh attempt budget (counted from attempt 1; the fencing number keeps
    # growing); its message committed with it; the operator recorded.
    assert run(db, order_id) == ("due", 1, None, "expired")
    with db.read() as conn:
        assert conn.execute(text("SELECT retried_from FROM effect_runs WHERE order_id = :o"),
                            {"o": order_id}).scalar_one() == 1
    with db.read() as conn:
        retried = conn.execute(text("SELECT actor, data FROM event_log "
                                    "WHERE order_id = :o AND type = 'effect.retried'"),
                               {"o": order_id}).all()
    assert [(actor, data["effect"], data["code"], data["attempts"]) for actor, data in retried] == [
        (f"operator:{ALICE}", NAME, "acme_refused", 1)]
    relayed(db, order_id)
    assert order_ids_on(search(console, keys, q=order_id, attention="1").get_data(as_text=True)) == []

    # Its message performs it once; a redelivery and the sweep perform nothing more.
    assert pump(order_id) == [200]
    assert acme_effect.calls(order_id) == [("expired", 1), ("expired", 2)]
    assert run(db, order_id) == ("done", 2, None, "expired")
    lease_passes(db, order_id)
    sweep()
    assert pump(order_id) == [] and set(pump(order_id, again=True)) == {200}
    assert len(acme_effect.calls(order_id)) == 2
    assert len(events(db, order_id, "effect.done")) == 1

    # A retry of a run that did not fail is refused (409) and changes nothing.
    again = console.post(f"/orders/{order_id}/actions/retry-effect", headers=as_alice(keys),
                         data={"csrf": csrf.issue(SECRET, ALICE), "effect": NAME})
    assert again.status_code == 409
    assert "acme_notice is done, not failed" in html_text(again)
    assert run(db, order_id) == ("done", 2, None, "expired")
    assert len(events(db, order_id, "effect.retried")) == 1


def test_a_retry_of_an_effect_never_asked_or_not_registered_is_refused(acme, console, keys, db, order_id):
    post_order(client_for("webhook_intake"), order_id)
    token = csrf.issue(SECRET, ALICE)
    never = console.post(f"/orders/{order_id}/actions/retry-effect", headers=as_alice(keys),
                         data={"csrf": token, "effect": NAME})
    assert never.status_code == 409 and "never asked for this order" in html_text(never)
    unknown = console.post(f"/orders/{order_id}/actions/retry-effect", headers=as_alice(keys),
                           data={"csrf": token, "effect": "nobody_registered"})
    assert unknown.status_code == 400
    assert events(db, order_id, "effect.retried") == []


def html_text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def test_a_retry_keeps_the_fencing_number_growing_and_gives_a_fresh_budget(acme, db, order_id):
    """After staff retry a failed run, its next claim is attempt 2, not 1 again: an attempt of
    before the retry still running (number 1) can never record over the new one; and the budget
    counts only the attempts after the retry."""
    failed_for_good(db, order_id)
    with db.transaction() as conn:
        assert effect_runs.retry_effect_run(conn, order_id, NAME) == {"attempts": 1, "error_code": "acme_refused"}
    claim = effect_runs.claim_effect_run(db, order_id, NAME, 60)
    assert (claim["outcome"], claim["attempts"], claim["retried_from"]) == ("claimed", 2, 1)
    with db.transaction() as conn:
        assert not effect_runs.finish_effect_run(conn, order_id, NAME, 1)  # the old attempt: fenced off
        assert effect_runs.finish_effect_run(conn, order_id, NAME, 2)
    assert run(db, order_id) == ("done", 2, None, "expired")
