"""`python -m shared.operator`: the console's reads and actions in a terminal."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

import pytest
from sqlalchemy import text

from shared import bootstrap, operator
from shared.domain import keys
from shared.domain.messages import OrderPlaced
from shared.handlers import intake
from tests.conftest import base_env
from tests.functions.test_operator_console import events_of, expire_with_manual_refund, place


@pytest.fixture
def cli(monkeypatch, database_url, capsys):
    """Run the CLI in-process; (exit status, stdout, stderr)."""
    for key, value in base_env(database_url).items():
        monkeypatch.setenv(key, value)
    bootstrap.reset()

    def run(*argv: str) -> tuple[int, str, str]:
        status = operator.main(list(argv))
        out, err = capsys.readouterr()
        return status, out, err

    yield run
    bootstrap.reset()


def test_status_prints_the_timeline_and_json(cli, db, settings, order_id):
    place(db, settings, order_id)
    status, out, _ = cli("status", order_id)
    assert status == 0 and f"order {order_id}: pending" in out
    assert "order.received" in out and "verification.requested" in out
    assert "OCCURRED_AT" in out and "deadline" in out
    status, out, _ = cli("--json", "status", order_id)
    story = json.loads(out)
    assert [e["type"] for e in story["events"]] == ["order.received", "verification.requested"]
    assert cli("status", "no-such-order")[0] == 2


def test_list_attention_names_orders_that_opened_no_session(cli, db, settings):
    from datetime import timedelta

    stale = f"cli-stale-{uuid.uuid4().hex[:8]}"
    now = datetime.now(timezone.utc)
    intake.place_order(db, settings, OrderPlaced("orders", f"e-{stale}", stale, "a@example.com",
                                                 ordered_at=now - timedelta(days=30)), now=now)
    status, out, _ = cli("list", "--attention")
    assert status == 0
    section = out.split("orders that opened no session (received in the last 14 days)\n", 1)[1]
    assert any(line.startswith(stale) and "order.stale" in line for line in section.splitlines())
    page = json.loads(cli("--json", "list", "--attention")[1])
    assert stale in [u["order_id"] for u in page["no_session"]]
    assert "no_session" not in json.loads(cli("--json", "list")[1])


def test_list_filters_like_the_console(cli, db, settings):
    email = f"cli-{uuid.uuid4().hex[:8]}@example.com"
    ids = [f"cli-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    for order_id in ids:
        place(db, settings, order_id, email)
    status, out, _ = cli("--json", "list", "--q", email, "--limit", "2")
    page = json.loads(out)
    assert status == 0 and len(page["sessions"]) == 2 and page["next"]
    _, out, _ = cli("--json", "list", "--q", email, "--limit", "2", "--after", page["next"])
    rest = json.loads(out)
    assert {s["order_id"] for s in page["sessions"] + rest["sessions"]} == set(ids) and rest["next"] is None
    _, out, _ = cli("list", "--q", email)
    assert out.splitlines()[0].startswith("ORDER_ID") and len(out.splitlines()) == 4
    assert cli("list", "--q", email, "--status", "verified")[1] == "no session matches\n"


def session_user(db) -> str:
    with db.read() as conn:
        return conn.execute(text("SELECT session_user")).scalar_one()


def test_actions_record_the_operator(cli, db, settings, order_id):
    expire_with_manual_refund(db, settings, order_id)
    status, out, _ = cli("--by", "carol", "refund-done", order_id, "--note", "till refund")
    assert status == 0 and out.strip() == f"refund-done {order_id}: accepted"
    completed = [e for e in events_of(db, order_id) if e[0] == "refund.completed"]
    assert completed[0][2] == {"manual": True, "previous": "manual"}  # the note is not in the event
    assert cli("--by", "carol", "refund-failed", order_id)[0] == 1
    # From the CLI: its database user, then the self-declared name; never an operator:<email>.
    assert ("refund.completed", f"cli:{session_user(db)} (carol)") in [e[:2] for e in events_of(db, order_id)]


def test_verify_takes_a_reason_code_and_keeps_the_note_out_of_the_events(cli, db, settings, order_id):
    """Issue 24: `--reason` is a code of the action's list (a usage error lists them); the note
    (at most 200 characters) is kept in the database only and shown by `status`."""
    place(db, settings, order_id)
    status, out, err = cli("--by", "erin", "verify", order_id, "--reason", "ID checked in store")
    assert status == 2 and out == "" and "invalid choice" in err and "id_checked_in_store" in err
    status, _, err = cli("verify", order_id, "--reason", "id_checked_in_store", "--note", "n" * 201)
    assert status == 2 and "at most 200 characters" in err
    status, _, err = cli("verify", order_id)
    assert status == 2 and "--reason" in err
    assert [e[0] for e in events_of(db, order_id)] == ["order.received", "verification.requested"]

    note = "licence seen at the counter by Sam"
    status, out, _ = cli("--by", "erin", "verify", order_id, "--reason", "id_checked_in_store", "--note", note)
    assert status == 0 and out.strip() == f"verify {order_id}: accepted"
    approved = [e for e in events_of(db, order_id) if e[0] == "verification.approved"]
    assert approved[0][1] == f"cli:{session_user(db)} (erin)"
    assert approved[0][2]["reason"] == "id_checked_in_store" and "note" not in approved[0][2]
    with db.read() as conn:
        assert conn.execute(text("SELECT count(*) FROM outbox WHERE order_id = :o AND payload::text LIKE :n"),
                            {"o": order_id, "n": "%counter by Sam%"}).scalar() == 0
    _, out, _ = cli("status", order_id)
    assert note in out and "NOTE" in out
    story = json.loads(cli("--json", "status", order_id)[1])
    assert list(story["notes"].values()) == [note]


def test_status_and_list_are_recorded_in_the_audit_of_reads(cli, db, settings, order_id):
    """Issue 24: the CLI's reads are recorded as its actions are (`cli:<database user> (<--by>)`),
    a searched email as its keyed hash."""
    from shared.domain.customers import email_key
    from tests.conftest import CUSTOMER_KEY_SECRET

    email = f"cli-read-{uuid.uuid4().hex[:8]}@example.com"
    place(db, settings, order_id, email)
    assert cli("--by", "carol", "--json", "status", order_id)[0] == 0
    assert cli("--by", "carol", "list", "--q", email)[0] == 0
    assert cli("--by", "carol", "status", f"unknown-{order_id}")[0] == 2  # nothing shown, nothing recorded
    actor = f"cli:{session_user(db)} (carol)"
    with db.read() as conn:
        rows = [tuple(r) for r in conn.execute(text(
            "SELECT actor, action, order_id, email_key, detail FROM read_audit WHERE actor = :a "
            "AND (order_id LIKE :o OR email_key = :e) ORDER BY id"),
            {"a": actor, "o": f"%{order_id}", "e": email_key(CUSTOMER_KEY_SECRET.encode(), email)})]
    assert rows == [(actor, "view_order", order_id, None, "cli, json"),
                    (actor, "search", None, email_key(CUSTOMER_KEY_SECRET.encode(), email), "by email, cli")]


def test_retry_all_parked_shows_progress_and_unparks(cli, db, settings, order_id):
    place(db, settings, order_id)
    with db.transaction() as conn:
        conn.execute(text("UPDATE outbox SET dead_at = now() WHERE order_id = :o"), {"o": order_id})
    status, out, err = cli("--by", "dave", "retry", "--all-parked")
    assert status == 0 and out.startswith("retried ") and "] " in err
    with db.read() as conn:
        assert conn.execute(text("SELECT count(*) FROM outbox WHERE dead_at IS NOT NULL")).scalar() == 0
    assert ("outbox.retried", f"cli:{session_user(db)} (dave)") in [e[:2] for e in events_of(db, order_id)]


def test_funnel_ranges(cli, db):
    day = datetime(2026, 4, 2, tzinfo=timezone.utc).date()
    with db.transaction() as conn:
        conn.execute(text("DELETE FROM funnel_daily WHERE day = :d"), {"d": day})
        conn.execute(text("INSERT INTO funnel_daily VALUES (:d, 'orders_received', 4), (:d, 'verified', 3)"),
                     {"d": day})
    status, out, _ = cli("funnel", "2026-04-01..2026-04-03")
    assert status == 0 and "2026-04-02  4" in out and "conversion 75.0 %" in out
    assert json.loads(cli("--json", "funnel", "2026-04-02", "2026-04-02")[1])["counts"] == {
        "orders_received": 4, "verified": 3}
    assert cli("funnel", "today")[0] == 0 and cli("funnel", "7d")[0] == 0


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["funnel", "last-tuesday"], ["extend", "o-1"],
                                  ["retry"], ["list", "--due", "soon"], ["list", "--due", "99999999999"],
                                  ["list", "--due", "-3"], ["retry-effect"], ["retry-store-action"]])
def test_usage_errors_are_one_line(cli, db, argv):  # db: the schema, whichever test runs first
    status, out, err = cli(*argv)
    assert status == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("python -m shared.operator: ")
    assert "Traceback" not in err


def test_the_local_stack_env_is_used_only_when_no_database_is_named(tmp_path):
    stack = tmp_path / "stack.env"
    stack.write_text("DATABASE_URL=postgresql+pg8000://postgres@127.0.0.1:5999/verification\nTASKS_BACKEND=local\n")
    env: dict[str, str] = {}
    assert operator.load_stack_env(stack, env) and env["TASKS_BACKEND"] == "local"
    named = {"DATABASE_URL": "postgresql+pg8000://elsewhere/db"}
    assert not operator.load_stack_env(stack, named) and named == {"DATABASE_URL": "postgresql+pg8000://elsewhere/db"}


def test_purge_dry_run_counts_and_changes_nothing(cli, db, settings, order_id):
    from datetime import timedelta

    from sqlalchemy import text

    place(db, settings, order_id)
    with db.transaction() as conn:
        conn.execute(text("UPDATE verification_sessions SET status = 'expired', "
                          "closed_at = now() - interval '120 days' WHERE order_id = :o"), {"o": order_id})
    status, out, _ = cli("--json", "purge", "--dry-run")
    assert status == 0 and json.loads(out)["customers erased"] >= 1
    status, out, _ = cli("purge", "--dry-run")
    assert status == 0 and "customers erased" in out and "dry run: nothing changed" in out
    with db.read() as conn:
        assert conn.execute(text("SELECT customer_email IS NOT NULL FROM verification_sessions WHERE order_id = :o"),
                            {"o": order_id}).scalar()
    assert timedelta(days=90) == settings.retention.sessions
    assert cli("purge")[0] == 2  # a real purge is the sweeper's: only --dry-run here


# ---- one order id, two sources (issue 10 item 5) ---------------------------------------------


def place_sale(db, settings, sale_id: str) -> str:
    """A Lightspeed sale's session, as its webhook opens it; its key."""
    key = keys.session_key("lightspeed", sale_id)
    command = OrderPlaced("lightspeed", f"{sale_id}:CLOSED:1", key, "till@example.com")
    assert intake.place_order(db, settings, command, now=datetime.now(timezone.utc)).status == "accepted"
    return key


def test_status_finds_a_sale_by_its_key_or_its_bare_id(cli, db, settings, order_id):
    sale = place_sale(db, settings, order_id)
    for given in (sale, order_id):
        status, out, _ = cli("status", given)
        assert status == 0 and f"order {sale}: pending, source lightspeed" in out
        assert "matches" not in out


def test_status_of_an_id_two_sources_share_shows_both(cli, db, settings, order_id):
    place(db, settings, order_id)
    sale = place_sale(db, settings, order_id)
    status, out, _ = cli("status", order_id)
    assert status == 0
    assert out.splitlines()[0] == f"{order_id} matches 2 sessions: {order_id} (orders), {sale} (lightspeed)"
    assert f"order {order_id}: pending, source orders" in out and f"order {sale}: pending, source lightspeed" in out
    _, out, _ = cli("--json", "status", order_id)
    assert [m["session"]["order_id"] for m in json.loads(out)["matches"]] == [order_id, sale]
    _, out, _ = cli("status", order_id, "--source", "orders")
    assert f"order {order_id}: pending" in out and sale not in out
    _, out, _ = cli("list", "--q", order_id)
    assert {line.split()[0] for line in out.splitlines()[1:]} == {order_id, sale}


def test_an_action_on_a_shared_id_needs_its_source(cli, db, settings, order_id):
    place(db, settings, order_id)
    sale = place_sale(db, settings, order_id)
    status, out, err = cli("cancel", order_id, "--reason", "customer_request")
    assert status == 2 and out == "" and "--source" in err and sale in err
    assert [s for s in statuses(db, order_id, sale)] == ["pending", "pending"]
    status, out, _ = cli("--by", "erin", "cancel", order_id, "--source", "lightspeed",
                          "--reason", "customer_request")
    assert status == 0 and out.strip() == f"cancel {sale}: accepted"
    assert statuses(db, order_id, sale) == ["pending", "cancelled"]
    assert ("order.cancelled", f"cli:{session_user(db)} (erin)") in [e[:2] for e in events_of(db, sale)]
    assert events_of(db, order_id)[-1][0] == "verification.requested"


def test_an_action_on_a_bare_sale_id_alone_finds_the_sale(cli, db, settings, order_id):
    sale = place_sale(db, settings, order_id)
    status, out, _ = cli("--by", "erin", "verify", order_id, "--reason", "id_checked_in_store")
    assert status == 0 and out.strip() == f"verify {sale}: accepted"
    assert statuses(db, sale) == ["verified"]


def statuses(db, *order_ids: str) -> list[str]:
    with db.read() as conn:
        return [conn.execute(text("SELECT status FROM verification_sessions WHERE order_id = :o"),
                             {"o": o}).scalar_one() for o in order_ids]


def test_status_of_an_order_that_opened_no_session_prints_what_was_recorded(cli, db, settings, order_id):
    from datetime import timedelta

    old = datetime.now(timezone.utc) - timedelta(days=30)
    stale = OrderPlaced("orders", f"evt-{order_id}", order_id, "late@example.com", ordered_at=old)
    assert intake.place_order(db, settings, stale, now=datetime.now(timezone.utc)).status == "ignored"
    status, out, _ = cli("status", order_id)
    assert status == 0 and "no verification session" in out and "order.stale" in out
    assert json.loads(cli("--json", "status", order_id)[1])["events"][0]["type"] == "order.stale"


def test_status_shows_the_store_times_and_store_actions(cli, db, settings, order_id):
    from shared.stores.base import ActionResult, StoreActionKind
    from shared.stores.registry import StoreRegistry

    shop = type("Shop", (), {"source": "orders", "actions": frozenset({StoreActionKind.HOLD}),
                             "perform": lambda self, kind, order: ActionResult()})()
    from datetime import timedelta

    placed = (datetime.now(timezone.utc) - timedelta(days=1)).replace(microsecond=0)
    command = OrderPlaced("orders", f"evt-{order_id}", order_id, "buyer@example.com", ordered_at=placed)
    intake.place_order(db, settings, command, now=datetime.now(timezone.utc),
                       stores=StoreRegistry(own={"orders": shop}))
    status, out, _ = cli("status", order_id)
    assert status == 0 and f"placed at the store {placed:%Y-%m-%d %H:%M:%S} UTC, received" in out
    assert "store actions" in out and "hold" in out and "due" in out


# ---- retries of a failed store call and of a failed side effect (the console's retry buttons) ----


def fail_store_action(db, order_id: str, action: str, code: str = "HOLD_NOT_ALLOWED") -> None:
    """The store refused one of the order's store actions for good, as the subscriber records it."""
    from shared.db import store_actions

    with db.transaction() as conn:
        conn.execute(text("INSERT INTO store_actions (order_id, action, connector, requested_at) "
                          "VALUES (:o, :a, 'orders', now())"), {"o": order_id, "a": action})
    assert store_actions.claim_store_action(db, order_id, action, "orders", 300)["outcome"] == "claimed"
    with db.transaction() as conn:
        assert store_actions.fail_store_action(conn, order_id, action, "orders", code)


def store_rows(db, order_id: str) -> list[tuple]:
    with db.read() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT action, state, error_code, finished_at IS NULL FROM store_actions WHERE order_id = :o "
            "ORDER BY action"), {"o": order_id})]


def messages_on_order_actions(db, order_id: str, field: str) -> list[str]:
    with db.read() as conn:
        return [r[0] for r in conn.execute(text(
            "SELECT payload->'data'->>:f FROM outbox WHERE order_id = :o AND payload->>'topic' = 'order-actions' "
            "AND payload->'data' ? :f ORDER BY id"), {"o": order_id, "f": field})]


def test_retry_store_action_makes_a_failed_store_call_due_again(cli, db, settings, order_id):
    place(db, settings, order_id)
    fail_store_action(db, order_id, "hold")
    assert store_rows(db, order_id) == [("hold", "failed", "HOLD_NOT_ALLOWED", False)]
    assert messages_on_order_actions(db, order_id, "action") == []

    status, out, err = cli("--by", "dave", "retry-store-action", order_id)  # its one failed store action
    assert (status, out, err) == (0, f"retry-store-action {order_id}: accepted\n", "")
    assert store_rows(db, order_id) == [("hold", "due", None, True)]
    assert messages_on_order_actions(db, order_id, "action") == ["hold"]  # its message, with the retry
    retried = [e for e in events_of(db, order_id) if e[0] == "store.action_retried"]
    assert retried == [("store.action_retried", f"cli:{session_user(db)} (dave)",
                        {"action": "hold", "connector": "orders"})]

    # Nothing failed any more: nothing is retried, with or without naming it.
    status, out, _ = cli("retry-store-action", order_id)
    assert (status, out) == (1, f"retry-store-action {order_id}: ignored (no failed store action: nothing to retry)\n")
    status, out, _ = cli("--json", "retry-store-action", order_id, "--store-action", "hold:orders")
    assert status == 1 and json.loads(out) == {"status": "ignored", "orderId": order_id,
                                               "detail": "no failed store action of that kind"}
    assert store_rows(db, order_id) == [("hold", "due", None, True)]
    assert len([e for e in events_of(db, order_id) if e[0] == "store.action_retried"]) == 1
    assert messages_on_order_actions(db, order_id, "action") == ["hold"]


def test_retry_store_action_names_one_of_several_and_an_unknown_order_is_not_found(cli, db, settings, order_id):
    place(db, settings, order_id)
    fail_store_action(db, order_id, "hold")
    fail_store_action(db, order_id, "flag_for_review", "REVIEW_TAG_REFUSED")
    status, out, err = cli("retry-store-action", order_id)
    assert status == 2 and out == "" and len(err.splitlines()) == 1
    assert "2 failed store actions: hold:orders, flag_for_review:orders" in err and "--store-action" in err
    status, out, _ = cli("--by", "dave", "retry-store-action", order_id, "--store-action", "flag_for_review:orders")
    assert (status, out) == (0, f"retry-store-action {order_id}: accepted\n")
    assert store_rows(db, order_id) == [("flag_for_review", "due", None, True),
                                        ("hold", "failed", "HOLD_NOT_ALLOWED", False)]

    unknown = f"unknown-{order_id}"
    assert cli("retry-store-action", unknown) == (1, f"retry-store-action {unknown}: ignored (unknown order)\n", "")
    status, out, _ = cli("retry-store-action", unknown, "--store-action", "hold:orders")
    assert (status, out) == (1, f"retry-store-action {unknown}: ignored (no failed store action of that kind)\n")
    assert store_rows(db, unknown) == []


@pytest.fixture
def acme(monkeypatch):
    """The test-only side effect `acme_notice` registered and asked for by the deadline, as
    tests/functions/test_new_side_effect.py registers it."""
    from dataclasses import replace

    from shared.domain import model
    from shared.effects import registry
    from shared.handlers import timers
    from tests import acme_effect

    monkeypatch.setitem(registry.EFFECTS, acme_effect.NAME, acme_effect.EFFECT)
    monkeypatch.setattr(timers, "DEADLINE", replace(model.DEADLINE, effects=(acme_effect.NAME,)))
    acme_effect.CALLS.clear()
    acme_effect.SCRIPT.clear()
    yield acme_effect
    acme_effect.CALLS.clear()
    acme_effect.SCRIPT.clear()


def perform_effect(db, settings, order_id: str, name: str):
    """The `order-actions` subscriber performs the side effect's message."""
    from shared.domain.messages import EffectRun
    from shared.handlers import effects

    return effects.perform(db, settings, EffectRun(order_id=order_id, effect=name), now=datetime.now(timezone.utc))


def effect_row(db, order_id: str, name: str) -> tuple | None:
    with db.read() as conn:
        row = conn.execute(text("SELECT state, attempts, retried_from, error_code FROM effect_runs "
                                "WHERE order_id = :o AND effect = :e"), {"o": order_id, "e": name}).one_or_none()
    return tuple(row) if row else None


def test_retry_effect_makes_a_failed_side_effect_due_again_and_it_is_performed_once(cli, acme, db, settings,
                                                                                   order_id):
    from shared.effects import EffectFailed

    name = acme.NAME
    assert cli("retry-effect", order_id) == (1, f"retry-effect {order_id}: ignored (unknown order)\n", "")
    status, out, err = cli("retry-effect", order_id, "--effect", name)
    assert status == 1 and out == "" and err == (f"python -m shared.operator: side effect {name} was never "
                                                 "asked for this order\n")

    expire_with_manual_refund(db, settings, order_id)  # the deadline asks for the side effect
    assert effect_row(db, order_id, name) == ("due", 0, 0, None)
    status, out, _ = cli("retry-effect", order_id)
    assert (status, out) == (1, f"retry-effect {order_id}: ignored (no failed side effect: nothing to retry)\n")
    status, out, err = cli("retry-effect", order_id, "--effect", name)  # as the console's 409
    assert (status, out) == (1, "") and err == (f"python -m shared.operator: side effect {name} is due, not failed: "
                                                "nothing to retry\n")
    acme.SCRIPT.append(EffectFailed("acme_refused"))
    assert perform_effect(db, settings, order_id, name).status == "accepted"
    assert effect_row(db, order_id, name) == ("failed", 1, 0, "acme_refused")
    assert messages_on_order_actions(db, order_id, "effect") == [name]

    status, out, err = cli("--by", "dave", "retry-effect", order_id)  # its one failed side effect
    assert (status, out, err) == (0, f"retry-effect {order_id}: accepted\n", "")
    assert effect_row(db, order_id, name) == ("due", 1, 1, None)  # a fresh budget; the fencing number kept
    assert messages_on_order_actions(db, order_id, "effect") == [name, name]  # its message, with the retry
    retried = [e for e in events_of(db, order_id) if e[0] == "effect.retried"]
    assert retried == [("effect.retried", f"cli:{session_user(db)} (dave)",
                        {"effect": name, "attempts": 1, "code": "acme_refused"})]

    assert perform_effect(db, settings, order_id, name).status == "accepted"
    assert acme.calls(order_id) == [("expired", 1), ("expired", 2)]
    assert effect_row(db, order_id, name) == ("done", 2, 1, None)
    status, out, err = cli("retry-effect", order_id, "--effect", name)
    assert (status, out) == (1, "") and f"side effect {name} is done, not failed: nothing to retry" in err
    assert len([e for e in events_of(db, order_id) if e[0] == "effect.retried"]) == 1
    status, _, err = cli("retry-effect", order_id, "--effect", "nobody_registered")  # as the console's 400
    assert status == 1 and "is not registered: nothing would perform it" in err
