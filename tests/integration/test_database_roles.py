"""Each function's database role (shared/db/grants.py) against a real PostgreSQL.

The schema is created and the grants applied by `shared.db.upgrade` running
as a non-superuser owner (CREATEROLE, owner of the database), as the deploy
step does. Each function then runs its own handlers through a login user that
is only a member of its role: what it must do works; DDL, other functions'
tables and columns, and reading `customer_email` (except the email function)
are refused with SQLSTATE 42501 (insufficient privilege).
"""

from __future__ import annotations

import contextlib
import dataclasses

import uuid
from datetime import datetime, timedelta, timezone

import pg8000.native
import pytest
from pg8000.exceptions import DatabaseError
from sqlalchemy import text

from shared.ports import Outcome, ProviderSession, RefundResult
from shared.config import Settings
from shared.db import health, schema
from shared.db.database import Database
from shared.db.engine import make_engine
from shared.db.grants import GRANTS, OWNER_ONLY, role_name
from shared.db.upgrade import main as upgrade_main
from shared.db.upgrade import upgrade
from shared.domain.messages import EmailJob, EventMessage, OrderAction, OrderPlaced, StoreCancelled, TimerPayload
from shared.handlers import analytics, emails, intake, redrive, refunds, relay, retention, timers, transitions
from tests.conftest import base_env

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)
INSUFFICIENT_PRIVILEGE = "42501"


class RecordingScheduler:
    parallel_calls = 1

    def __init__(self) -> None:
        self.created, self.deleted = [], []

    def create(self, task, *, timeout=None):
        self.created.append(task.name)
        return Outcome.CREATED

    def delete(self, name, *, timeout=None):
        self.deleted.append(name)
        return Outcome.DELETED

    def check(self):
        pass


class RecordingPublisher:
    def __init__(self) -> None:
        self.messages = []

    def publish_batch(self, messages, *, timeout=None):
        self.messages.extend(messages)
        return [f"m-{uuid.uuid4().hex[:8]}" for _ in messages]

    def check(self):
        pass


class Cluster:
    """Superuser access to the test server, to create and drop login users."""

    def __init__(self, postgres, database: str) -> None:
        self.port = postgres.port
        self.database = database
        self.created: list[str] = []

    def admin(self, database: str | None = None) -> pg8000.native.Connection:
        return pg8000.native.Connection("postgres", host="127.0.0.1", port=self.port,
                                        database=database or self.database)

    def login_user(self, prefix: str, *options: str) -> str:
        name = f"t_{prefix}_{uuid.uuid4().hex[:8]}"
        conn = self.admin()
        try:
            conn.run(f'CREATE ROLE "{name}" LOGIN {" ".join(options)}')
        finally:
            conn.close()
        self.created.append(name)
        return name

    def url(self, user: str) -> str:
        return f"postgresql+pg8000://{user}@127.0.0.1:{self.port}/{self.database}"

    def connect(self, user: str) -> pg8000.native.Connection:
        return pg8000.native.Connection(user, host="127.0.0.1", port=self.port, database=self.database)


def settings_for(url: str) -> Settings:
    return Settings.from_env(base_env(url, DB_POOL_SIZE="1", DB_MAX_OVERFLOW="1"))


@pytest.fixture
def cluster(postgres, fresh_database):
    database = fresh_database.rsplit("/", 1)[1]
    cluster = Cluster(postgres, database)
    yield cluster
    conn = cluster.admin()
    try:
        conn.run(f'ALTER DATABASE "{database}" OWNER TO postgres')
        for name in cluster.created:
            conn.run(f'REASSIGN OWNED BY "{name}" TO postgres')
            conn.run(f'DROP OWNED BY "{name}"')
    finally:
        conn.close()
    conn = cluster.admin("postgres")
    try:
        for name in cluster.created:
            conn.run(f'DROP ROLE IF EXISTS "{name}"')
    finally:
        conn.close()


@pytest.fixture
def owner(cluster) -> str:
    """The migrator: no superuser, only CREATEROLE and the database."""
    name = cluster.login_user("owner", "CREATEROLE")
    conn = cluster.admin()
    try:
        conn.run(f'ALTER DATABASE "{cluster.database}" OWNER TO "{name}"')
    finally:
        conn.close()
    return name


@pytest.fixture
def members(cluster, owner) -> dict[str, str]:
    """Each function's login user, made a member of its role by the upgrade."""
    users = {fn: cluster.login_user(fn.replace("-", "_")) for fn in GRANTS}
    upgrade(settings_for(cluster.url(owner)).database, {fn: [user] for fn, user in users.items()})
    return users


@pytest.fixture
def as_role(cluster, members):
    """function -> a Database connected as that function's login user."""
    opened = []

    def database(function: str) -> Database:
        db = Database(make_engine(settings_for(cluster.url(members[function])).database))
        opened.append(db)
        return db

    yield database
    for db in opened:
        db.engine.dispose()


def refused(cluster, user: str, statement: str) -> bool:
    """True when `statement` fails for lack of privilege (any other error fails the test)."""
    conn = cluster.connect(user)
    try:
        conn.run(statement)
    except DatabaseError as exc:
        code = exc.args[0].get("C") if exc.args and isinstance(exc.args[0], dict) else None
        assert code == INSUFFICIENT_PRIVILEGE, f"{statement}: failed with {code}, not for privilege"
        return True
    finally:
        conn.close()
    return False


def place(db, order_id: str, email: str = "a@example.com") -> str:
    # The handler reads only the window and offsets from these settings.
    settings = settings_for("postgresql+pg8000://unused@127.0.0.1/unused")
    return intake.place_order(db, settings, OrderPlaced("orders", f"m-{order_id}", order_id, email), now=T0).status


def test_every_table_is_granted_to_some_function_or_kept_by_the_owner():
    tables = {t.name for t in schema.metadata.sorted_tables}
    granted = {table for grants in GRANTS.values() for table in grants}

    assert granted <= tables
    assert tables - granted == set(OWNER_ONLY), "a new table: add it to GRANTS (or OWNER_ONLY)"


def test_each_function_runs_its_own_statements_under_its_role(as_role, cluster, members):
    order = f"order-{uuid.uuid4().hex[:10]}"
    scheduler, publisher = RecordingScheduler(), RecordingPublisher()

    # webhook-intake: opens the session (once), relays its timers and messages.
    intake_db = as_role("webhook-intake")
    assert place(intake_db, order) == "accepted"
    assert place(intake_db, order) == "duplicate"
    report = relay.relay(intake_db, scheduler, publisher, order_ids=[order])
    assert report.delivered >= 3 and report.failed == 0

    # send-customer-email: reads the email address, creates the provider session, records it.
    sent = []
    provider = type("Provider", (), {"create_session": lambda self, o: ProviderSession("s-1", "https://v/s-1")})()
    sender = type("Sender", (), {"send": lambda self, message: sent.append(message.to)})()
    email_db = as_role("send-customer-email")
    email_settings = settings_for(cluster.url(members["send-customer-email"]))
    assert emails.send_email(email_db, email_settings, sender, provider, EmailJob(order, "link"),
                                  now=T0).status == "sent"
    assert sent == ["a@example.com"]
    assert relay.relay(email_db, scheduler, publisher, order_ids=[order]).failed == 0

    # timer-expiry: the deadline timer expires the session.
    timer_db = as_role("timer-expiry")
    deadline = TimerPayload(order_id=order, kind="deadline", reminder_index=0, deadline_version=1)
    assert timers.fire(timer_db, deadline, now=T0 + timedelta(days=4)).status == "accepted"
    assert relay.relay(timer_db, scheduler, publisher, order_ids=[order]).failed == 0

    # sweep: looks for overdue sessions (another order, whose timer was lost) and relays.
    lost = f"order-{uuid.uuid4().hex[:10]}"
    assert place(intake_db, lost) == "accepted"
    sweep_db = as_role("sweep")
    assert timers.expire_overdue(sweep_db, now=T0 + timedelta(days=4), grace=timedelta(minutes=5)).expired >= 1
    sweep_settings = settings_for(cluster.url(members["sweep"]))
    redrive.redrive_lost_work(sweep_db, sweep_settings, now=T0 + timedelta(days=4))
    # ... and purges what is past its retention (here: far in the future, so everything closed),
    # closing first a session still open RETENTION past its deadline (its refund left to a person).
    still_open = f"order-{uuid.uuid4().hex[:10]}"
    assert place(intake_db, still_open) == "accepted"
    purged = retention.purge(sweep_db, dataclasses.replace(sweep_settings, tasks=dataclasses.replace(sweep_settings.tasks, backend="cloud")),
                             now=T0 + timedelta(days=400))
    assert purged.get("customers erased", 0) >= 1
    assert purged.get("open sessions closed and erased", 0) >= 1
    with as_role("operator-console").read() as conn:
        assert conn.execute(text("SELECT status, refund_status, customer_email FROM verification_sessions "
                                 "WHERE order_id = :o"), {"o": still_open}).one() == ("cancelled", "manual", None)
    assert relay.relay(sweep_db, scheduler, publisher).failed == 0
    # ... and reads the outbox's backlog for the alerts (functions/sweep.py).
    with sweep_db.read() as conn:
        assert health.outbox_backlog(conn).undelivered >= 0

    # operator-console: the System page's numbers (no local queue in the cloud).
    with as_role("operator-console").read() as conn:
        assert health.report(conn, local_queue=False).local_dead_letters is None

    # request-refund: claims and records the refund.
    refund_db = as_role("request-refund")
    gateway = type("Gateway", (), {"refund": lambda self, o, idempotency_key, reason: RefundResult.REFUNDED})()
    assert refunds.request_refund(refund_db, settings_for(cluster.url(members["request-refund"])), gateway,
                                      OrderAction(order, "refund", "expired"),
                                      now=T0 + timedelta(days=4)).detail == "refunded"
    assert relay.relay(refund_db, scheduler, publisher, order_ids=[order]).failed == 0

    # record-analytics: counts an event once.
    analytics_db = as_role("record-analytics")
    event = EventMessage(id=str(uuid.uuid4()), type="order.received", order_id=order,
                         occurred_at=T0.isoformat())
    assert analytics.record_event(analytics_db, event).status == "accepted"
    assert analytics.record_event(analytics_db, event).status == "duplicate"

    conn = cluster.admin()
    try:
        status, refund = conn.run("SELECT status, refund_status FROM verification_sessions WHERE order_id = :o",
                                  o=order)[0]
    finally:
        conn.close()
    assert (status, refund) == ("expired", "refunded")
    assert publisher.messages and scheduler.created


DDL = [
    "CREATE TABLE t_intruder (a int)",
    "ALTER TABLE outbox ADD COLUMN intruder int",
    "DROP TABLE event_log",
    "TRUNCATE processed_messages",
    "CREATE INDEX t_intruder ON outbox (kind)",
]


@pytest.mark.parametrize("function", sorted(GRANTS))
def test_no_function_may_change_the_schema(function, members, cluster):
    for statement in DDL:
        assert refused(cluster, members[function], statement), statement


def test_no_function_creates_objects_through_public_and_place_order_has_a_fixed_search_path(cluster, owner):
    """Before PostgreSQL 15 every role may CREATE in schema public (simulated here), and on every
    version TEMP on the database: the upgrade revokes both from PUBLIC (issue 24, item 14)."""
    conn = cluster.admin()
    try:
        conn.run("GRANT CREATE ON SCHEMA public TO PUBLIC")  # PostgreSQL 14's default
    finally:
        conn.close()
    users = {fn: cluster.login_user(fn.replace("-", "_")) for fn in GRANTS}
    upgrade(settings_for(cluster.url(owner)).database, {fn: [user] for fn, user in users.items()})
    for function, user in users.items():
        for statement in ("CREATE TABLE t_intruder (a int)", "CREATE TEMP TABLE t_shadow (a int)",
                          "CREATE FUNCTION now_shadow() RETURNS int LANGUAGE sql AS 'SELECT 1'"):
            assert refused(cluster, user, statement), (function, statement)
    conn = cluster.admin()
    try:
        [[config]] = conn.run("SELECT proconfig FROM pg_proc WHERE proname = 'place_order'")
    finally:
        conn.close()
    assert config == ["search_path=pg_catalog, public, pg_temp"]


READS_EMAIL = "SELECT customer_email FROM verification_sessions LIMIT 1"
READS_CUSTOMER_ID = "SELECT customer_id FROM verification_sessions LIMIT 1"


def test_only_the_email_function_and_the_console_read_the_customers_email(members, cluster):
    for function, user in members.items():
        staff = function == "operator-console"
        assert refused(cluster, user, READS_EMAIL) == (function not in ("send-customer-email", "operator-console")), \
            function
        assert refused(cluster, user, READS_CUSTOMER_ID) == (not staff), function


# What each function must not do: another function's tables, or columns it does not write.
FORBIDDEN = {
    "webhook-intake": ["SELECT * FROM funnel_daily", "SELECT * FROM email_sends", "DELETE FROM event_log",
                       "SELECT * FROM event_log", "UPDATE verification_sessions SET refund_status = 'x'",
                       "SELECT * FROM local_tasks"],
    "timer-expiry": ["INSERT INTO verification_sessions (order_id, source, customer_email, deadline) "
                     "VALUES ('x', 'orders', 'x@example.com', now())",
                     "SELECT * FROM webhook_events", "SELECT * FROM processed_messages",
                     "UPDATE verification_sessions SET deadline = now()"],
    "sweep": ["SELECT * FROM email_sends", "DELETE FROM event_log", "SELECT * FROM webhook_events",
              "DELETE FROM verification_sessions", "SELECT * FROM funnel_daily"],
    "send-customer-email": ["SELECT * FROM webhook_events", "INSERT INTO funnel_daily VALUES (now(), 'x', 1)",
                            "UPDATE verification_sessions SET status = 'verified'",
                            "SELECT * FROM countdown_timers"],
    "record-analytics": ["SELECT order_id FROM verification_sessions", "SELECT * FROM outbox",
                         "SELECT * FROM event_log", "SELECT * FROM processed_messages",
                         "INSERT INTO outbox (kind, payload) VALUES ('x', '{}')"],
    "request-refund": ["UPDATE verification_sessions SET status = 'verified'",
                       "SELECT deadline FROM verification_sessions", "SELECT * FROM countdown_timers",
                       "SELECT * FROM funnel_daily"],
    # The console may erase a customer's email (forget), so the column is writable to it; it
    # still writes no other identity of the session.
    "operator-console": ["UPDATE verification_sessions SET source = 'x', order_id = 'y'",
                         "DELETE FROM event_log", "UPDATE event_log SET actor = 'x'",
                         "INSERT INTO funnel_daily VALUES (now(), 'x', 1)", "SELECT * FROM processed_messages",
                         "SELECT * FROM local_tasks", "DELETE FROM verification_sessions"],
}


# Verify once's records: only the functions that need them (DESIGN.md 3b).
READS_RECORDS = "SELECT * FROM verified_customers LIMIT 1"
RECORD_FUNCTIONS = ("webhook-intake", "operator-console")


def test_only_the_intake_and_the_console_read_the_verified_customer_records(members, cluster):
    for function, user in members.items():
        assert refused(cluster, user, READS_RECORDS) == (function not in RECORD_FUNCTIONS), function
    # The sweep deletes expired records without reading whose they are.
    assert refused(cluster, members["sweep"], "SELECT email_key, session_id FROM verified_customers")
    assert not refused(cluster, members["sweep"], "DELETE FROM verified_customers WHERE expires_at < now()")


def test_verify_once_runs_under_the_intake_the_console_and_the_sweep(as_role):

    settings = settings_for("postgresql+pg8000://unused@127.0.0.1/unused")
    intake_db, console_db, sweep_db = as_role("webhook-intake"), as_role("operator-console"), as_role("sweep")
    first, second, third = (f"order-{uuid.uuid4().hex[:10]}" for _ in range(3))
    order = lambda key: OrderPlaced("orders", f"m-{key}", key, "Buyer@Example.com", customer_id="c-1")  # noqa: E731
    assert intake.place_order(intake_db, settings, order(first), now=T0).status == "accepted"
    assert transitions.operator_action(console_db, first, "verify", operator="op", now=T0, reason="id_checked_in_store",
                                       age_checked=True, reverify_after=timedelta(days=365)).status == "accepted"
    assert intake.place_order(intake_db, settings, order(second), now=T0).status == "accepted"
    assert transitions.revoke(console_db, second, operator="op", reason="document_doubt", now=T0).status == "accepted"
    assert intake.place_order(intake_db, settings, order(third), now=T0).status == "accepted"
    assert transitions.operator_action(console_db, third, "verify", operator="op", now=T0, reason="id_checked_in_store",
                                       age_checked=True, reverify_after=timedelta(days=365)).status == "accepted"
    erasure = transitions.forget(console_db, settings, "buyer@example.com", operator="op", now=T0)
    assert erasure.sessions == 3 and erasure.records == 1
    in_cloud = dataclasses.replace(settings, tasks=dataclasses.replace(settings.tasks, backend="cloud"))
    fourth = f"order-{uuid.uuid4().hex[:10]}"
    assert intake.place_order(intake_db, settings, order(fourth), now=T0).status == "accepted"
    assert transitions.operator_action(console_db, fourth, "verify", operator="op", now=T0, reason="id_checked_in_store",
                                       age_checked=True, reverify_after=timedelta(days=365)).status == "accepted"
    assert retention.purge(sweep_db, in_cloud, now=T0 + timedelta(days=400)).get("verified customers expired") == 1


def test_only_the_console_reads_an_operators_note_and_the_sweep_deletes_it(as_role, members, cluster):
    """Issue 24: the note is written with the console's action, read by the console alone, and
    deleted by retention with the customer (the sweep never reads it)."""
    from shared.db import reads

    settings = settings_for("postgresql+pg8000://unused@127.0.0.1/unused")
    intake_db, console_db, sweep_db = as_role("webhook-intake"), as_role("operator-console"), as_role("sweep")
    key = f"order-{uuid.uuid4().hex[:10]}"
    assert intake.place_order(intake_db, settings, OrderPlaced("orders", f"m-{key}", key, "n@example.com"),
                              now=T0).status == "accepted"
    assert transitions.operator_action(console_db, key, "verify", operator="op", now=T0, reason="other",
                                       note="seen at the till").status == "accepted"
    with console_db.read() as conn:
        assert list(reads.order_story(conn, key)["notes"].values()) == ["seen at the till"]
    for function, user in members.items():
        assert refused(cluster, user, "SELECT note FROM operator_notes LIMIT 1") == (function != "operator-console"), \
            function
    in_cloud = dataclasses.replace(settings, tasks=dataclasses.replace(settings.tasks, backend="cloud"))
    assert retention.purge(sweep_db, in_cloud, now=T0 + timedelta(days=400)).get("operator notes erased", 0) >= 1
    with console_db.read() as conn:
        assert reads.order_story(conn, key)["notes"] == {}


def test_the_sweep_records_its_run_and_only_the_console_shows_it(as_role, members, cluster):
    from shared.db import health

    finished = datetime.now(timezone.utc)
    for run in range(2):  # the second run upserts the same row
        with as_role("sweep").transaction() as conn:
            health.record_sweep(conn, finished_at=finished + timedelta(seconds=run), seconds=0.25,
                                report={"expired": run, "relayed": 2})
    with as_role("operator-console").read() as conn:
        last = health.report(conn, local_queue=False).last_sweep
    assert last.finished_at == finished + timedelta(seconds=1) and last.seconds == 0.25
    assert last.report == {"expired": 1, "relayed": 2}
    for function, user in members.items():
        assert refused(cluster, user, "SELECT finished_at, report FROM sweep_runs") == \
            (function not in ("sweep", "operator-console")), function  # the upsert reads its own row
        if function != "sweep":
            assert refused(cluster, user, "INSERT INTO sweep_runs (name, finished_at, seconds) VALUES ('x', now(), 1)"), \
                function
    assert refused(cluster, members["sweep"], "DELETE FROM sweep_runs")


def test_the_console_records_and_reads_the_audit_of_reads_nobody_rewrites_it_and_the_sweep_deletes_it(
        as_role, members, cluster):
    """Issue 24: the console (and the CLI, which logs in with its role) writes an entry for each
    read and lists them; no role updates one; only the sweep deletes, past RETENTION, without
    reading who looked at what."""
    from shared.db import audit_store
    from shared.db import retention as purges
    from shared.domain.audit import ReadAction, ReadEntry

    order = f"order-{uuid.uuid4().hex[:10]}"
    with as_role("operator-console").read() as conn:
        audit_store.record(conn, ReadEntry("operator:alice@example.com", ReadAction.VIEW_ORDER, order_id=order))
        entries, _ = audit_store.recent(conn, order=order)
    assert [(e["actor"], e["action"], e["order_id"]) for e in entries] == [
        ("operator:alice@example.com", "view_order", order)]
    for function, user in members.items():
        assert refused(cluster, user, "SELECT actor, order_id, email_key FROM read_audit") == \
            (function != "operator-console"), function
        if function != "operator-console":
            assert refused(cluster, user, "INSERT INTO read_audit (actor, action) VALUES ('x', 'search')"), function
        assert refused(cluster, user, "UPDATE read_audit SET actor = 'x'"), function
    assert refused(cluster, members["operator-console"], "DELETE FROM read_audit")
    sweep_db = as_role("sweep")
    assert purges.purge_batch(sweep_db, purges.READ_AUDIT, datetime.now(timezone.utc) + timedelta(days=1), 100) >= 1


@pytest.mark.parametrize("function", sorted(GRANTS))
def test_no_function_reaches_what_it_does_not_use(function, members, cluster):
    assert FORBIDDEN.keys() == GRANTS.keys()
    for statement in FORBIDDEN[function]:
        assert refused(cluster, members[function], statement), statement


def test_the_upgrade_makes_the_grants_exact_again(members, cluster, owner):
    user = members["record-analytics"]
    conn = cluster.admin()
    try:
        conn.run(f'GRANT SELECT ON outbox TO "{role_name("record-analytics")}"')
    finally:
        conn.close()
    assert not refused(cluster, user, "SELECT * FROM outbox")

    upgrade(settings_for(cluster.url(owner)).database, {})

    assert refused(cluster, user, "SELECT * FROM outbox")
    assert not refused(cluster, user, "SELECT * FROM funnel_daily")


def test_the_command_takes_the_connection_from_the_environment_and_members_from_flags(
        cluster, owner, monkeypatch, capsys):
    user = cluster.login_user("cli")
    monkeypatch.setenv("DATABASE_URL", cluster.url(owner))

    assert upgrade_main(["--member", f"record-analytics={user}"]) == 0
    assert "schema version" in capsys.readouterr().out
    assert not refused(cluster, user, "SELECT * FROM funnel_daily")
    assert refused(cluster, user, "SELECT * FROM outbox")

    assert upgrade_main(["--member", "no-such-function=x"]) == 2
    assert "expected FUNCTION=DBUSER" in capsys.readouterr().err


def test_the_intake_opens_a_lightspeed_sale_and_records_its_void_under_its_role(as_role):
    # A namespaced source's order reads, under the order's lock, whether the store voided it first
    # (the event log); the void of an unknown sale is recorded there.
    intake_db = as_role("webhook-intake")
    settings = settings_for("postgresql+pg8000://unused@127.0.0.1/unused")
    sale = f"lightspeed:{uuid.uuid4().hex[:10]}"
    assert intake.place_order(intake_db, settings, OrderPlaced("lightspeed", f"m-{sale}", sale, "a@example.com"),
                              now=T0).status == "accepted"

    voided = f"lightspeed:{uuid.uuid4().hex[:10]}"
    assert intake.cancel_order(intake_db, settings, StoreCancelled("lightspeed", f"v-{voided}", voided),
                                      now=T0).status == "ignored"
    assert intake.place_order(intake_db, settings, OrderPlaced("lightspeed", f"m-{voided}", voided, "a@example.com"),
                              now=T0).status == "ignored"


def test_analytics_counts_a_verification_and_its_duration_under_its_role(as_role, cluster):
    # The approval's time to verify goes to verify_durations, once per order (ON CONFLICT (order_id)).
    analytics_db = as_role("record-analytics")
    order = f"order-{uuid.uuid4().hex[:10]}"
    approved = EventMessage(id=str(uuid.uuid4()), type="verification.approved", order_id=order,
                            occurred_at=T0.isoformat(), data={"seconds_to_verify": 3600})
    assert analytics.record_event(analytics_db, approved).status == "accepted"
    again = dataclasses.replace(approved, id=str(uuid.uuid4()))
    assert analytics.record_event(analytics_db, again).status == "accepted"

    conn = cluster.admin()
    try:
        assert conn.run("SELECT count(*) FROM verify_durations WHERE order_id = :o", o=order) == [[1]]
    finally:
        conn.close()


def test_store_actions_are_written_performed_re_driven_and_shown_under_each_role(as_role, cluster, members):
    # Each function that writes a store action (intake: hold; timer: cancel), performs one
    # (request-refund), re-drives one (sweep), shows and retries one (console) and reads whether
    # the store was asked to release (email) does it under its own role.
    from shared.db import reads
    from shared.db.redrive import store_actions_to_redrive
    from shared.db.store_actions import release_asked
    from shared.domain.messages import StoreAction
    from shared.handlers import store_actions
    from shared.stores.base import ActionResult, StoreActionKind, StoreRefused
    from shared.stores.registry import StoreRegistry

    class Shop:
        source = "orders"
        actions = frozenset(StoreActionKind)

        def __init__(self) -> None:
            self.refuse = False

        def perform(self, kind, order):
            if self.refuse:
                raise StoreRefused("NOPE")
            return ActionResult(detail={"hold_ids": ["h"]} if kind is StoreActionKind.HOLD else {})

    shop = Shop()
    stores = StoreRegistry(own={"orders": shop})
    settings = settings_for("postgresql+pg8000://unused@127.0.0.1/unused")
    order = f"order-{uuid.uuid4().hex[:10]}"

    intake_db = as_role("webhook-intake")
    assert intake.place_order(intake_db, settings, OrderPlaced("orders", f"m-{order}", order, "a@example.com",
                                                               ordered_at=T0, store_ref="gid://x/1"),
                              now=T0, stores=stores).status == "accepted"
    refund_db = as_role("request-refund")
    refund_settings = settings_for(cluster.url(members["request-refund"]))
    assert store_actions.perform(refund_db, refund_settings, stores, StoreAction(order, "hold", "orders"),
                                 now=T0).detail == "hold done"

    with as_role("send-customer-email").read() as conn:
        assert release_asked(conn, order) is False

    email_db = as_role("send-customer-email")
    sent = []
    provider = type("Provider", (), {"create_session": lambda self, o: ProviderSession("s-9", "https://v/s-9")})()
    sender = type("Sender", (), {"send": lambda self, message: sent.append(message.to)})()
    emails.send_email(email_db, settings_for(cluster.url(members["send-customer-email"])), sender, provider,
                      EmailJob(order, "link"), now=T0)
    timer_db = as_role("timer-expiry")
    deadline = TimerPayload(order_id=order, kind="deadline", reminder_index=0, deadline_version=1)
    assert timers.fire(timer_db, deadline, now=T0 + timedelta(days=4), stores=stores).status == "accepted"
    shop.refuse = True
    assert store_actions.perform(refund_db, refund_settings, stores, StoreAction(order, "cancel_and_refund", "orders"),
                                 now=T0).detail == "cancel_and_refund refused: NOPE"

    sweep_db = as_role("sweep")
    with sweep_db.transaction() as conn:
        store_actions_to_redrive(conn, 0, 10)
    redrive.redrive_lost_work(sweep_db, settings_for(cluster.url(members["sweep"])), now=T0 + timedelta(days=4))

    console_db = as_role("operator-console")
    with console_db.read() as conn:
        story = reads.order_story(conn, order)
    assert story["session"]["store_ordered_at"] == T0 and story["session"]["store_ref"] == "gid://x/1"
    assert {a["action"]: a["state"] for a in story["store_actions"]} == {"hold": "done", "cancel_and_refund": "failed"}
    assert transitions.retry_store_action(console_db, order, "cancel_and_refund:orders", operator="a",
                                          now=T0).status == "accepted"


def test_registered_side_effects_are_written_performed_re_driven_and_counted_under_each_role(
        as_role, cluster, members, monkeypatch):
    # A transition writes the run (timer-expiry: the deadline), the `order-actions` subscriber
    # claims and records it (request-refund), the sweep re-drives an unfinished one, and the
    # console's health numbers count a failed one, each under its own role.
    from shared.db import effect_runs
    from shared.domain import model
    from shared.domain.messages import EffectRun
    from shared.effects import Effect, EffectFailed, registry
    from shared.handlers import effects

    outcomes: list[Exception | None] = [None, EffectFailed("refused")]

    def perform(ctx, order):
        failure = outcomes.pop(0)
        if failure:
            raise failure

    monkeypatch.setitem(registry.EFFECTS, "role_probe", Effect("role_probe", perform))
    monkeypatch.setattr(timers, "DEADLINE", dataclasses.replace(model.DEADLINE, effects=("role_probe",)))
    refund_db, refund_settings = as_role("request-refund"), settings_for(cluster.url(members["request-refund"]))
    sweep_db = as_role("sweep")
    done, failed = f"order-{uuid.uuid4().hex[:10]}", f"order-{uuid.uuid4().hex[:10]}"
    for order in (done, failed):
        place(as_role("webhook-intake"), order)
        with as_email_function(cluster, members) as conn:  # the link went out (the email function's)
            conn.execute(text("INSERT INTO email_sends (order_id, kind, reminder_index, state) "
                              "VALUES (:o, 'link', 0, 'sent')"), {"o": order})
        deadline = TimerPayload(order_id=order, kind="deadline", reminder_index=0, deadline_version=1)
        assert timers.fire(as_role("timer-expiry"), deadline, now=T0 + timedelta(days=4)).status == "accepted"

    with sweep_db.transaction() as conn:  # due past a (zero) lease: re-driven under the sweep's role
        assert sorted(effect_runs.effect_runs_to_redrive(conn, ["role_probe"], 0, 10)) == sorted(
            [(done, "role_probe"), (failed, "role_probe")])
    assert redrive.redrive_lost_work(sweep_db, settings_for(cluster.url(members["sweep"])), now=T0) >= 0

    assert effects.perform(refund_db, refund_settings, EffectRun(done, "role_probe"), now=T0).detail == "role_probe done"
    assert effects.perform(refund_db, refund_settings, EffectRun(failed, "role_probe"),
                           now=T0).detail == "role_probe failed: refused"
    with as_role("operator-console").read() as conn:
        assert health.report(conn, local_queue=False).effects_failed == {"role_probe": 1}

    # The console lists the failed run on the order page and in "needs attention", and staff
    # retry it (due again, its message); the sweep's retention deletes the finished runs.
    from shared.db import reads

    console_db = as_role("operator-console")
    with console_db.read() as conn:
        assert [(r["effect"], r["state"]) for r in reads.order_story(conn, failed)["effect_runs"]] == [
            ("role_probe", "failed")]
        listed, _ = reads.list_sessions(conn, reads.SessionFilter(attention=True, query=failed), T0)
        assert [r["order_id"] for r in listed] == [failed]
    assert transitions.retry_effect_run(console_db, failed, "role_probe", operator="a", now=T0).accepted
    outcomes.append(None)
    again = effects.perform(refund_db, refund_settings, EffectRun(failed, "role_probe"), now=T0)
    assert again.detail == "role_probe done"
    in_cloud = dataclasses.replace(refund_settings, tasks=dataclasses.replace(refund_settings.tasks, backend="cloud"))
    assert retention.purge(sweep_db, in_cloud, now=T0 + timedelta(days=400)).get("finished side-effect runs", 0) >= 2
    with console_db.read() as conn:
        assert reads.order_story(conn, failed)["effect_runs"] == []


@contextlib.contextmanager
def as_email_function(cluster, members):
    """A transaction as the email function (it writes `email_sends`)."""
    db = Database(make_engine(settings_for(cluster.url(members["send-customer-email"])).database))
    try:
        with db.transaction() as conn:
            yield conn
    finally:
        db.engine.dispose()
