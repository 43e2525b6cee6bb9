"""Verify once (issue 23, DESIGN.md 3b) through the entry points, with the session's PostgreSQL:
a returning customer's order opens `verified` at once (no provider session, link email or
timers), every no-match case opens a normal session, revocations are recorded, and the key
is peppered."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from devstack.signing import lightspeed_body, lightspeed_sale, veriff_body, veriff_headers
from shared.db import customer_store
from shared.domain import customers
from shared.domain.messages import OrderPlaced, ProviderDecision
from shared.domain.model import Decision
from shared.handlers import intake as intake_handler
from tests.conftest import CUSTOMER_KEY_SECRET, VERIFF_API_KEY, VERIFF_SECRET, base_env
from tests.functions.conftest import client_for, count
from tests.functions.test_inbound_edges import post_lightspeed
from tests.functions.test_subscribers import deliver, email_job, smtp  # noqa: F401 (a fixture)
from tests.functions.test_webhook_intake import post_order, status_of
from tests.functions.test_startup import start
from tests.sessions import bind_provider_session


def unique_email() -> str:
    return f"buyer-{uuid.uuid4().hex[:10]}@example.com"


def unique_customer() -> str:
    return f"cust-{uuid.uuid4().hex[:10]}"


def events(db, order_id: str, type_: str) -> list[dict]:
    with db.read() as conn:
        return [r[0] for r in conn.execute(
            text("SELECT data FROM event_log WHERE order_id = :o AND type = :t ORDER BY id"),
            {"o": order_id, "t": type_})]


def record_count(db, customer_key: str) -> int:
    return count(db, "SELECT count(*) FROM verified_customers WHERE customer_key = :k", k=customer_key)


def key_of(source: str, customer_id: str, email: str) -> str:
    return customers.keys_for(CUSTOMER_KEY_SECRET.encode(), source, customer_id, email).customer_key


def approve(intake, db, key: str, dob: str = "1990-01-01"):
    """The customer verifies on the link's provider session (bound as the email subscriber does,
    unless the link email already opened one)."""
    with db.read() as conn:
        session_id = conn.execute(text("SELECT provider_session_id FROM verification_sessions WHERE order_id = :o"),
                                  {"o": key}).scalar_one()
    if session_id is None:
        session_id = f"v-{uuid.uuid4().hex[:12]}"
        bind_provider_session(db, key, session_id)
    body = veriff_body(key, 9001, verification_id=session_id, date_of_birth=dob)
    response = intake.post("/webhooks/veriff", data=body, headers=veriff_headers(VERIFF_SECRET, VERIFF_API_KEY, body))
    assert response.status_code == 200 and response.json["status"] == "accepted", response.json
    return response


def assert_reused(db, key: str, original: str) -> None:
    """`verified` / `returning_customer` at once: no provider session, no link email, no timers."""
    assert status_of(db, key) == "verified"
    [reused] = events(db, key, "verification.reused")
    assert (reused["reason"], reused["original_session"]) == ("returning_customer", original)
    assert events(db, key, "verification.requested") == []
    assert count(db, "SELECT count(*) FROM countdown_timers WHERE order_id = :o", o=key) == 0
    assert count(db, "SELECT count(*) FROM outbox WHERE order_id = :o AND kind = 'task.create'", o=key) == 0
    assert count(db, "SELECT count(*) FROM outbox WHERE order_id = :o "
                     "AND payload->>'topic' = 'customer-emails'", o=key) == 0
    assert count(db, "SELECT count(*) FROM provider_sessions WHERE order_id = :o", o=key) == 0
    assert count(db, "SELECT count(*) FROM verification_sessions WHERE order_id = :o "
                     "AND provider_session_id IS NULL AND decided_at IS NOT NULL", o=key) == 1


def assert_normal(db, key: str) -> None:
    """A normal session: pending, its link email and deadline timer on their way."""
    assert status_of(db, key) == "pending"
    assert events(db, key, "verification.reused") == []
    assert count(db, "SELECT count(*) FROM countdown_timers WHERE order_id = :o AND kind = 'deadline'", o=key) == 1
    assert count(db, "SELECT count(*) FROM outbox WHERE order_id = :o "
                     "AND payload->>'topic' = 'customer-emails'", o=key) == 1


def send_emails(db, client, key: str) -> None:
    """Deliver every customer email the order's outbox holds to send_customer_email."""
    with db.read() as conn:
        jobs = [r[0] for r in conn.execute(text(
            "SELECT payload FROM outbox WHERE order_id = :o AND payload->>'topic' = 'customer-emails' ORDER BY id"),
            {"o": key})]
    for job in jobs:
        assert deliver(client, "customer-emails", job["data"], key=job["attributes"]["message_key"],
                       order_id=key).status_code == 200


# ---- a returning customer, on each source ---------------------------------------------


def test_generic_order_of_a_returning_customer_is_verified_at_once_with_no_link_email(
        app_env, intake, db, smtp):  # noqa: F811
    inbox, port = smtp
    app_env(EMAIL_BACKEND="smtp", SMTP_PORT=str(port), SMTP_STARTTLS="false")
    intake = client_for("webhook_intake")
    emails = client_for("send_customer_email", "cloudevent")
    email, customer = unique_email(), unique_customer()
    first, second = f"order-{uuid.uuid4().hex[:10]}", f"order-{uuid.uuid4().hex[:10]}"

    assert post_order(intake, first, customerEmail=email, customerId=customer).json["status"] == "accepted"
    send_emails(db, emails, first)
    assert len(inbox.messages) == 1  # the first order's link
    approve(intake, db, first)
    assert status_of(db, first) == "verified"
    assert record_count(db, key_of("orders", customer, email)) == 1

    # The same account and email (typed in another case): verified at once.
    placed = post_order(intake, second, customerEmail=email.upper(), customerId=customer, msg_id=f"msg-{second}")
    assert placed.status_code == 200 and placed.json["status"] == "accepted"
    assert_reused(db, second, first)
    sent_before = len(inbox.messages)
    send_emails(db, emails, second)
    assert len(inbox.messages) == sent_before  # no link email, counted on the SMTP server
    # A repeat of the delivery, or another delivery for the same order, opens nothing more.
    again = post_order(intake, second, customerEmail=email, customerId=customer, msg_id=f"msg-{second}")
    assert again.json["status"] == "duplicate"
    other = post_order(intake, second, customerEmail=email, customerId=customer)
    assert other.json["status"] == "duplicate"
    assert len(events(db, second, "verification.reused")) == 1 and len(events(db, second, "order.duplicate")) == 1


def test_lightspeed_sale_of_a_returning_customer_is_verified_at_once(intake, db):
    email, customer = unique_email(), unique_customer()
    first_id, second_id = uuid.uuid4().hex[:10], uuid.uuid4().hex[:10]

    def sale(sale_id: str) -> bytes:
        return lightspeed_body(lightspeed_sale(sale_id, "CLOSED", email=email, customer_id=customer))

    assert post_lightspeed(intake, sale(first_id)).json["status"] == "accepted"
    first = f"lightspeed:{first_id}"
    approve(intake, db, first)
    assert record_count(db, key_of("lightspeed", customer, email)) == 1

    placed = post_lightspeed(intake, sale(second_id))
    assert placed.json["status"] == "accepted" and placed.json["orderId"] == f"lightspeed:{second_id}"
    assert_reused(db, f"lightspeed:{second_id}", first)


@pytest.mark.parametrize("source, customer_id", [("shopify", "7390328815702"), ("woocommerce", "42")])
def test_a_store_connectors_returning_customer_is_verified_at_once(db, settings, source, customer_id):
    # Shopify and WooCommerce parse customer.id / customer_id into the same command (their
    # routes are built on other branches): the domain and store level, with their keys.
    email, now = unique_email(), datetime.now(timezone.utc)
    customer_id = f"{customer_id}{uuid.uuid4().int % 10**6}"
    first, second = f"{source}:{uuid.uuid4().hex[:10]}", f"{source}:{uuid.uuid4().hex[:10]}"
    place = lambda key: intake_handler.place_order(  # noqa: E731
        db, settings, OrderPlaced(source, f"m-{key}", key, email, customer_id=customer_id), now=now)
    assert place(first).status == "accepted"
    assert_normal(db, first)
    session_id = f"v-{uuid.uuid4().hex[:10]}"
    bind_provider_session(db, first, session_id)
    from datetime import date
    decision = ProviderDecision("veriff", f"d-{first}", first, Decision.APPROVED, session_id, 9001,
                                decided_at=now, birth_date=date(1990, 1, 1))
    assert intake_handler.record_decision(db, settings, decision, now=now).status == "accepted"

    assert place(second).status == "accepted"
    assert_reused(db, second, first)
    assert record_count(db, key_of(source, customer_id, email)) == 1


# ---- the optional "no action needed" email (RETURNING_CUSTOMER_EMAIL) ---------------------------


def returning_order(intake, db, emails) -> tuple[str, str, str, str]:
    """A first order verified (its link email sent), then the same customer's second order,
    placed and reused: (customer id, email, first key, second key)."""
    email, customer = unique_email(), unique_customer()
    first, second = f"order-{uuid.uuid4().hex[:10]}", f"order-{uuid.uuid4().hex[:10]}"
    assert post_order(intake, first, customerEmail=email, customerId=customer).json["status"] == "accepted"
    send_emails(db, emails, first)
    approve(intake, db, first)
    placed = post_order(intake, second, customerEmail=email, customerId=customer, msg_id=f"msg-{second}")
    assert placed.status_code == 200 and placed.json["status"] == "accepted"
    assert status_of(db, second) == "verified" and len(events(db, second, "verification.reused")) == 1
    return customer, email, first, second


def customer_emails(db, key: str) -> list[str]:
    """The kinds of the customer emails the order's outbox holds."""
    with db.read() as conn:
        return [r[0] for r in conn.execute(text(
            "SELECT payload->'data'->>'kind' FROM outbox WHERE order_id = :o "
            "AND payload->>'topic' = 'customer-emails' ORDER BY id"), {"o": key})]


def test_a_returning_customer_gets_no_email_by_default(app_env, db, smtp):  # noqa: F811
    inbox, port = smtp
    app_env(EMAIL_BACKEND="smtp", SMTP_PORT=str(port), SMTP_STARTTLS="false")  # RETURNING_CUSTOMER_EMAIL unset
    emails = client_for("send_customer_email", "cloudevent")
    _, _, first, second = returning_order(client_for("webhook_intake"), db, emails)
    assert [m["X-Verification-Email"] for m in inbox.messages] == ["link"]  # the first order's only
    assert customer_emails(db, second) == []
    send_emails(db, emails, second)
    assert len(inbox.messages) == 1
    assert_reused(db, second, first)


@pytest.mark.parametrize("with_store", [False, True], ids=["no store connector", "store released"])
def test_with_returning_customer_email_on_the_customer_is_told_once_that_no_action_is_needed(
        app_env, monkeypatch, db, smtp, with_store):  # noqa: F811
    from shared.handlers.analytics import funnel
    from tests.functions.test_store_actions import CountingStore
    from tests.stores import use_connector

    inbox, port = smtp
    if with_store:  # the order's own store connector releases it: the email may promise shipping
        use_connector(monkeypatch, "orders", lambda stores: CountingStore("orders"))
    app_env(EMAIL_BACKEND="smtp", SMTP_PORT=str(port), SMTP_STARTTLS="false", RETURNING_CUSTOMER_EMAIL="true")
    intake, emails = client_for("webhook_intake"), client_for("send_customer_email", "cloudevent")
    customer, email, first, second = returning_order(intake, db, emails)
    day = datetime.now(timezone.utc).date()
    counts_before = funnel(db, day, day)["counts"]

    # Written with the order, in its transaction: one email job, no link, no timers.
    assert customer_emails(db, second) == ["returning"]
    assert count(db, "SELECT count(*) FROM countdown_timers WHERE order_id = :o", o=second) == 0
    assert count(db, "SELECT count(*) FROM provider_sessions WHERE order_id = :o", o=second) == 0
    # Repeats of the webhook (the same delivery, another delivery for the order) queue nothing more.
    assert post_order(intake, second, customerEmail=email, customerId=customer,
                      msg_id=f"msg-{second}").json["status"] == "duplicate"
    assert post_order(intake, second, customerEmail=email, customerId=customer).json["status"] == "duplicate"
    assert customer_emails(db, second) == ["returning"]

    sent_before = len(inbox.messages)
    send_emails(db, emails, second)
    send_emails(db, emails, second)  # the job delivered twice: the claim sends it once
    [told] = inbox.messages[sent_before:]
    assert told["To"] == email and told["X-Verification-Email"] == "returning"
    assert " ".join(told["Subject"].split()) == f"No action needed: your age is already verified for order {second}"
    body = told.get_body(("plain",)).get_content()
    page = told.get_body(("html",)).get_content()
    assert "no action is needed" in body.lower() and second in body
    assert "http" not in body and "href" not in page  # no link
    assert ("prepared for shipping" in body) is with_store  # a promise only when the store was told
    with db.read() as conn:
        sent = conn.execute(text("SELECT kind, state FROM email_sends WHERE order_id = :o"), {"o": second}).all()
    assert [tuple(row) for row in sent] == [("returning", "sent")]
    assert count(db, "SELECT count(*) FROM email_sends WHERE order_id = :o AND kind = 'link'", o=second) == 0

    # The funnel: the order counts as received and returning, the email counts nowhere (no
    # `links_sent`, no `verified`, no conversion change).
    analytics = client_for("record_analytics", "cloudevent")
    with db.read() as conn:
        published = [r[0] for r in conn.execute(text(
            "SELECT payload FROM outbox WHERE order_id = :o AND payload->>'topic' = 'verification-events' "
            "ORDER BY id"), {"o": second})]
    assert "customer.email_sent" in [p["data"]["type"] for p in published]
    for payload in published:
        assert deliver(analytics, "verification-events", payload["data"], key=payload["attributes"]["message_key"],
                       order_id=second).status_code == 200
    counts_after = funnel(db, day, day)["counts"]
    grown = {metric: counts_after.get(metric, 0) - counts_before.get(metric, 0)
             for metric in {*counts_before, *counts_after}}
    assert {metric: n for metric, n in grown.items() if n} == {"orders_received": 1, "returning_customers": 1}


# ---- no match ----------------------------------------------------------------------------


@pytest.fixture
def verified_customer(intake, db):
    """A generic order verified for (customer id, email): (customer id, email, its key)."""
    email, customer = unique_email(), unique_customer()
    first = f"order-{uuid.uuid4().hex[:10]}"
    assert post_order(intake, first, customerEmail=email, customerId=customer).json["status"] == "accepted"
    approve(intake, db, first)
    assert record_count(db, key_of("orders", customer, email)) == 1
    return customer, email, first


def test_a_guest_order_never_matches(intake, db, verified_customer):
    customer, email, _ = verified_customer
    guest = f"order-{uuid.uuid4().hex[:10]}"
    assert post_order(intake, guest, customerEmail=email).json["status"] == "accepted"
    assert_normal(db, guest)
    assert count(db, "SELECT count(*) FROM verification_sessions WHERE order_id = :o "
                     "AND customer_key IS NULL", o=guest) == 1  # a guest has no key


@pytest.mark.parametrize("change", ["other_customer_id", "other_email"])
def test_account_and_email_must_both_match(intake, db, verified_customer, change):
    customer, email, _ = verified_customer
    fields = {"customerEmail": email, "customerId": customer}
    fields["customerId" if change == "other_customer_id" else "customerEmail"] = (
        unique_customer() if change == "other_customer_id" else unique_email())
    other = f"order-{uuid.uuid4().hex[:10]}"
    assert post_order(intake, other, **fields).json["status"] == "accepted"
    assert_normal(db, other)


def test_another_sources_order_with_the_same_ids_does_not_match(db, settings, verified_customer):
    customer, email, _ = verified_customer
    key = f"shopify:{uuid.uuid4().hex[:10]}"
    assert intake_handler.place_order(db, settings, OrderPlaced("shopify", f"m-{key}", key, email, customer_id=customer),
                                      now=datetime.now(timezone.utc)).status == "accepted"
    assert_normal(db, key)


def test_a_record_past_reverify_after_does_not_match_and_retention_deletes_it(db, settings, verified_customer):
    from shared.handlers import retention
    customer, email, _ = verified_customer
    later = datetime.now(timezone.utc) + timedelta(days=366)
    key = f"order-{uuid.uuid4().hex[:10]}"
    assert intake_handler.place_order(db, settings, OrderPlaced("orders", f"m-{key}", key, email, customer_id=customer),
                                      now=later).status == "accepted"
    assert_normal(db, key)
    assert retention.preview(db, settings, now=later)["verified customers expired"] >= 1
    assert retention.purge(db, settings, now=later).get("verified customers expired", 0) >= 1
    assert record_count(db, key_of("orders", customer, email)) == 0


def test_reverify_after_0_turns_verify_once_off(app_env, db):
    app_env(REVERIFY_AFTER="0")
    intake = client_for("webhook_intake")
    email, customer = unique_email(), unique_customer()
    first, second = f"order-{uuid.uuid4().hex[:10]}", f"order-{uuid.uuid4().hex[:10]}"
    assert post_order(intake, first, customerEmail=email, customerId=customer).json["status"] == "accepted"
    approve(intake, db, first)
    assert record_count(db, key_of("orders", customer, email)) == 0  # nothing recorded
    assert post_order(intake, second, customerEmail=email, customerId=customer).json["status"] == "accepted"
    assert_normal(db, second)


def test_a_woocommerce_guest_id_0_has_no_key():
    assert customers.keys_for(b"pepper", "woocommerce", "0", "a@example.com") is None
    assert customers.keys_for(b"pepper", "orders", None, "a@example.com") is None
    assert customers.keys_for(None, "orders", "c1", "a@example.com") is None  # verify once off
    assert customers.keys_for(b"pepper", "woocommerce", "17", "a@example.com") is not None


# ---- revocation ----------------------------------------------------------------------------


def test_an_underage_decline_of_a_later_session_of_the_same_key_revokes_the_record(intake, db):
    email, customer = unique_email(), unique_customer()
    first, second, third = (f"order-{uuid.uuid4().hex[:10]}" for _ in range(3))
    # Two orders open before either is decided: the first verifies, the second's ID shows a minor.
    for key in (first, second):
        assert post_order(intake, key, customerEmail=email, customerId=customer).json["status"] == "accepted"
    approve(intake, db, first)
    assert record_count(db, key_of("orders", customer, email)) == 1
    approve(intake, db, second, dob=f"{datetime.now(timezone.utc).year - 18}-01-01")
    assert status_of(db, second) == "declined"
    assert record_count(db, key_of("orders", customer, email)) == 0
    [revoked] = events(db, second, "customer.verification_revoked")
    assert (revoked["reason"], revoked["original_session"]) == ("underage", first)

    assert post_order(intake, third, customerEmail=email, customerId=customer).json["status"] == "accepted"
    assert_normal(db, third)


def test_an_operator_revokes_from_the_cli_recorded_with_operator_and_reason(intake, db, verified_customer,
                                                                             capsys):
    from shared import bootstrap
    from shared.operator import main as cli
    customer, email, first = verified_customer
    reused = f"order-{uuid.uuid4().hex[:10]}"
    assert post_order(intake, reused, customerEmail=email, customerId=customer).json["status"] == "accepted"
    assert_reused(db, reused, first)

    assert cli(["status", reused]) == 0
    out = capsys.readouterr().out
    day = (datetime.now(timezone.utc) + timedelta(days=365)).date().isoformat()
    assert f"verified: returning customer (first verified on order {first}, until {day})" in out

    assert cli(["revoke", reused]) == 2  # a reason code is required (a usage error)
    assert "reason" in capsys.readouterr().err
    assert cli(["--by", "alice", "revoke", reused, "--reason", "document_doubt"]) == 0
    assert record_count(db, key_of("orders", customer, email)) == 0
    with db.read() as conn:
        actor, data = conn.execute(text("SELECT actor, data FROM event_log WHERE order_id = :o "
                                        "AND type = 'customer.verification_revoked'"), {"o": reused}).one()
    # the CLI records its database session user beside the self-declared --by (issue 24)
    assert actor.startswith("cli:") and actor.endswith(" (alice)")
    assert data["reason"] == "document_doubt" and data["original_session"] == first
    assert cli(["revoke", reused, "--reason", "again"]) == 2  # not a code: the usage error lists them
    assert "document_doubt" in capsys.readouterr().err
    assert cli(["revoke", reused, "--reason", "document_doubt"]) == 1  # nothing left to revoke
    bootstrap.reset()

    again = f"order-{uuid.uuid4().hex[:10]}"
    assert post_order(intake, again, customerEmail=email, customerId=customer).json["status"] == "accepted"
    assert_normal(db, again)


def test_an_operator_verify_counts_only_when_the_age_was_checked(intake, db, settings):
    from shared.handlers.transitions import operator_action
    now = datetime.now(timezone.utc)
    email, customer = unique_email(), unique_customer()
    unchecked, checked = f"order-{uuid.uuid4().hex[:10]}", f"order-{uuid.uuid4().hex[:10]}"
    for key in (unchecked, checked):
        assert post_order(intake, key, customerEmail=email, customerId=customer).json["status"] == "accepted"
    assert operator_action(db, unchecked, "verify", operator="bob", now=now, reason="provider_review_confirmed",
                           reverify_after=settings.reuse.reverify_after).status == "accepted"
    assert record_count(db, key_of("orders", customer, email)) == 0
    assert operator_action(db, checked, "verify", operator="bob", now=now, reason="id_checked_in_store",
                           age_checked=True, reverify_after=settings.reuse.reverify_after).status == "accepted"
    assert record_count(db, key_of("orders", customer, email)) == 1
    assert events(db, checked, "verification.approved")[0]["age_check"] == "passed"


# ---- the pepper ------------------------------------------------------------------------------


def test_the_pepper_is_required_and_a_missing_one_names_the_variable():
    for target in ("webhook_intake", "operator_console"):
        env = {k: v for k, v in base_env("postgresql+pg8000://u@127.0.0.1:1/x").items()
               if k != "CUSTOMER_KEY_SECRET"}
        env.update(CONSOLE_SECRET="s" * 32)
        result = start(target, **env)
        assert result.returncode != 0 and "ConfigError: CUSTOMER_KEY_SECRET" in result.stderr, target


def test_the_pepper_is_not_required_when_verify_once_is_off():
    from shared.config import Settings
    env = {k: v for k, v in base_env("postgresql+pg8000://u@127.0.0.1:1/x").items() if k != "CUSTOMER_KEY_SECRET"}
    assert Settings.from_env({**env, "REVERIFY_AFTER": "0"}).reuse.pepper() is None
    from shared.errors import ConfigError
    with pytest.raises(ConfigError, match="CUSTOMER_KEY_SECRET"):
        Settings.from_env(env).reuse.pepper()


def test_the_stored_key_is_not_an_unkeyed_hash_of_the_same_fields(intake, db, verified_customer):
    customer, email, first = verified_customer
    with db.read() as conn:
        stored, email_key = conn.execute(text("SELECT customer_key, email_key FROM verified_customers "
                                              "WHERE session_id = :o"), {"o": first}).one()
    for fields in (("orders", customer, email.lower()), ("customer", "orders", customer, email.lower())):
        for sep in ("\x1f", ":", "|", ""):
            unkeyed = hashlib.sha256(sep.join(fields).encode()).hexdigest()
            assert stored != unkeyed
    assert stored == key_of("orders", customer, email)  # the pepper reproduces it
    other = customers.keys_for(b"another pepper", "orders", customer, email)
    assert stored != other.customer_key and email_key != other.email_key
    # No email in clear, no date of birth, no provider data in the record.
    with db.read() as conn:
        row = conn.execute(text("SELECT * FROM verified_customers WHERE session_id = :o"), {"o": first}).mappings().one()
    assert set(row) == {"customer_key", "email_key", "source", "session_id", "verified_at", "expires_at"}
    assert email.lower() not in " ".join(str(v) for v in row.values()).lower()


def test_the_record_is_held_while_an_order_uses_it(db, verified_customer):
    # The order's read takes the record FOR SHARE: a revocation waits for the order's commit.
    customer, email, _ = verified_customer
    key = key_of("orders", customer, email)
    with db.transaction() as conn:
        assert customer_store.reusable_record(conn, key, datetime.now(timezone.utc)) is not None
        with db.connection() as other:
            # A session setting on a pooled (autocommit) connection outlives this test unless
            # reset: a later test waiting on a lock would time out after 200 ms (seen in CI).
            other.execute(text("SET lock_timeout = '200ms'"))
            try:
                from sqlalchemy.exc import DBAPIError
                with pytest.raises(DBAPIError):
                    other.execute(text("DELETE FROM verified_customers WHERE customer_key = :k"), {"k": key})
                other.rollback()
            finally:
                other.execute(text("RESET lock_timeout"))
                other.commit()


# ---- retention ---------------------------------------------------------------------------------


def test_the_sweep_deletes_expired_records_and_purge_dry_run_counts_them(app_env, db, verified_customer, capsys):
    from shared import bootstrap
    from shared.operator import main as cli
    customer, email, _ = verified_customer
    key = key_of("orders", customer, email)
    with db.transaction() as conn:  # the record ran out a minute ago
        conn.execute(text("UPDATE verified_customers SET expires_at = now() - interval '1 minute' "
                          "WHERE customer_key = :k"), {"k": key})

    assert cli(["--json", "purge", "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["verified customers expired"] >= 1
    assert record_count(db, key) == 1  # a dry run changes nothing
    bootstrap.reset()

    response = client_for("sweep").post("/", json={})
    assert response.status_code == 200
    assert response.json["purgedByKind"].get("verified customers expired", 0) >= 1
    assert record_count(db, key) == 0


# ---- visible -------------------------------------------------------------------------------------


def test_the_console_order_page_names_the_original_order_and_offers_a_revocation(app_env, db, verified_customer,
                                                                                  tmp_path):
    from tests.functions.test_operator_console import SECRET, as_alice, csrf_of
    from tests.iap_keys import AUDIENCE, IapKeys
    customer, email, first = verified_customer
    reused = f"order-{uuid.uuid4().hex[:10]}"
    assert post_order(client_for("webhook_intake"), reused, customerEmail=email, customerId=customer).json["status"] \
        == "accepted"
    keys = IapKeys.generate()
    from tests.functions.test_operator_console import OPERATORS
    app_env(CONSOLE_SECRET=SECRET, IAP_AUDIENCE=AUDIENCE, IAP_PUBLIC_KEYS_URL=keys.write_public(tmp_path),
            CONSOLE_OPERATORS=OPERATORS)
    console = client_for("operator_console")
    page = console.get(f"/orders/{reused}", headers=as_alice(keys)).get_data(as_text=True)
    day = (datetime.now(timezone.utc) + timedelta(days=365)).date().isoformat()
    assert (f'verified: returning customer (first verified on order <a href="/orders/{first}">{first}</a>, '
            f'until {day})') in page
    assert f"/orders/{reused}/actions/revoke" in page

    done = console.post(f"/orders/{reused}/actions/revoke", data={"csrf": csrf_of(page), "reason": "chargeback"},
                        headers=as_alice(keys))
    assert done.status_code == 303
    assert record_count(db, key_of("orders", customer, email)) == 0
    assert events(db, reused, "customer.verification_revoked")[0]["reason"] == "chargeback"
    after = console.get(done.headers["Location"], headers=as_alice(keys)).get_data(as_text=True)
    assert "revoke: accepted" in after and f"/orders/{reused}/actions/revoke" not in after


def test_the_funnel_counts_returning_customers_apart_from_conversion(db):
    from datetime import date
    from shared.domain.messages import EventMessage
    from shared.handlers import analytics
    day = date(2031, 3, 4)  # a day of its own in the session's database
    at = datetime(2031, 3, 4, 12, tzinfo=timezone.utc).isoformat()

    def event(type_: str, **data) -> None:
        message = EventMessage(id=str(uuid.uuid4()), type=type_, order_id=f"o-{uuid.uuid4().hex[:8]}",
                               occurred_at=at, data=data)
        assert analytics.record_event(db, message).status == "accepted"

    for _ in range(4):
        event("order.received")
    event("verification.approved", seconds_to_verify=60)  # one of two asked verified
    event("verification.reused", reason="returning_customer", original_session="o-1")
    event("verification.reused", reason="returning_customer", original_session="o-1")
    report = analytics.funnel(db, day, day)
    assert report["counts"]["returning_customers"] == 2 and report["counts"]["verified"] == 1
    assert report["conversion_percent"] == 50.0  # 1 of the 2 orders that asked, not 3 of 4


def test_a_store_cancellation_of_the_verified_order_does_not_revoke_the_record(db, settings, verified_customer):
    from shared.domain.messages import StoreCancelled
    customer, email, first = verified_customer
    result = intake_handler.cancel_order(db, settings, StoreCancelled("orders", f"c-{first}", first),
                                         now=datetime.now(timezone.utc))
    assert result.status == "ignored"  # the age was proven: the record stays
    assert record_count(db, key_of("orders", customer, email)) == 1
