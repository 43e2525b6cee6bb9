"""The README's claim that an email kind is added in one place: a throwaway kind, registered
only as a row of the spec table plus its two template files, is queued like any other, sent by
`send_customer_email` through a real SMTP server, recorded, and counted in the funnel.

Nothing else is patched but the database's CHECK on `email_sends.kind`, rebuilt from the spec
table the way migration `kind_checks` rebuilds it from the enum."""

from __future__ import annotations

import importlib
import shutil
from datetime import datetime, timezone

import pytest
from sqlalchemy import text

from shared.db import migrate
from shared.db.schema import one_of
from shared.domain.effects import Effects
from shared.domain.model import EMAILS, OPEN, EmailSpec
from shared.handlers.analytics import funnel
from tests.functions.conftest import client_for
from tests.functions.test_subscribers import deliver, place, smtp  # noqa: F401 (fixture)

render = importlib.import_module("shared.emails.render")  # the module (the package exports its function)
KIND = "thanks"
SPEC = EmailSpec(KIND, "Thank you for order $order_id", frozenset(OPEN), metric="thanks_sent")


@pytest.fixture
def thanks_kind(monkeypatch, tmp_path, db):
    """The new kind: one spec row, and its `.txt` / `.html` beside the shipped layout."""
    shutil.copy(render.TEMPLATES.joinpath("_layout.html"), tmp_path / "_layout.html")
    (tmp_path / f"{KIND}.txt").write_text("Thank you for order $order_id at $store_name.\n", encoding="utf-8")
    (tmp_path / f"{KIND}.html").write_text("<p>Thank you for order <b>$order_id</b>.</p>\n", encoding="utf-8")
    monkeypatch.setitem(EMAILS, KIND, SPEC)
    monkeypatch.setattr(render, "TEMPLATES", tmp_path)
    render._template.cache_clear()
    check = one_of("kind", list(EMAILS), "email_sends_kind")
    with db.transaction() as conn:
        conn.execute(text("ALTER TABLE email_sends DROP CONSTRAINT email_sends_kind"))
        conn.execute(text(f"ALTER TABLE email_sends ADD CONSTRAINT email_sends_kind CHECK ({check.sqltext})"))
    yield
    render._template.cache_clear()
    with db.transaction() as conn:
        conn.execute(text("DELETE FROM email_sends WHERE kind = :k"), {"k": KIND})
        migrate.kind_checks(conn)  # back to the enum's kinds


def test_a_kind_added_to_the_spec_table_is_sent_recorded_and_counted(app_env, db, settings, smtp, order_id,
                                                                     thanks_kind):
    inbox, port = smtp
    app_env(EMAIL_BACKEND="smtp", SMTP_PORT=str(port), SMTP_STARTTLS="false")
    place(db, settings, order_id)
    now = datetime.now(timezone.utc)
    fx = Effects(order_id, now, actor="test")
    fx.email(KIND)  # what a transition's `email=` puts in the outbox
    (queued,) = fx.outbox

    response = deliver(client_for("send_customer_email", "cloudevent"), queued.payload["topic"],
                       queued.payload["data"], key=queued.payload["attributes"]["message_key"], order_id=order_id)

    assert response.status_code == 200
    (sent,) = inbox.messages
    assert sent["Subject"] == f"Thank you for order {order_id}"
    assert sent["X-Verification-Email"] == KIND
    assert f"Thank you for order {order_id} at" in sent.get_body(("plain",)).get_content()
    assert f"<b>{order_id}</b>" in sent.get_body(("html",)).get_content()
    with db.read() as conn:
        state = conn.execute(text("SELECT state FROM email_sends WHERE order_id = :o AND kind = :k"),
                             {"o": order_id, "k": KIND}).scalar_one()
        event = conn.execute(text("SELECT event_id, occurred_at, data FROM event_log WHERE order_id = :o "
                                  "AND type = 'customer.email_sent'"), {"o": order_id}).one()
    assert state == "sent" and event.data["kind"] == KIND

    day, event_id = event.occurred_at.date(), str(event.event_id)
    before = funnel(db, day, day)["counts"].get("thanks_sent", 0)
    counted = deliver(client_for("record_analytics", "cloudevent"), "verification-events",
                      {"v": 1, "id": event_id, "type": "customer.email_sent", "order_id": order_id,
                       "occurred_at": event.occurred_at.isoformat(), "data": event.data}, key=event_id)
    assert counted.status_code == 200
    assert funnel(db, day, day)["counts"]["thanks_sent"] == before + 1
