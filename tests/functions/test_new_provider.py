"""A new ID provider is one line in the providers table (issue 22, item 5): a test-only provider
(`tests/acme_provider.py`: its settings section, webhook source with its code table, adapter and
signed local decision) registered from the test with its one line in
`shared.providers.registry.PROVIDERS`, and no other file edited. With ID_PROVIDER=acme the real
`send_customer_email` creates the link through acme's adapter (the session and its provider
session record `acme`), acme's signed decision through the real intake verifies the session in
PostgreSQL, and a decision for that session on Veriff's route is ignored: a decision binds only
to a provider session of its own provider."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from devstack.signing import veriff_body, veriff_headers
from shared.config import Settings
from shared.errors import ConfigError
from shared.providers import registry
from tests import acme_provider
from tests.conftest import VERIFF_API_KEY, VERIFF_SECRET
from tests.functions.conftest import client_for
from tests.functions.test_age_rule_and_binding import events
from tests.functions.test_subscribers import deliver, email_job
from tests.functions.test_webhook_intake import post_order, status_of

SECRET = "acme-id-secret"


@pytest.fixture
def acme(app_env, monkeypatch):
    monkeypatch.setitem(registry.PROVIDERS, acme_provider.NAME, acme_provider.LINE)  # the one line
    app_env(ID_PROVIDER="acme", ACME_ID_SECRET=SECRET)
    acme_provider.CREATED.clear()
    yield
    acme_provider.CREATED.clear()


def post_acme(intake, order_id: str, session_id: str, outcome: int, born: str | None = "1990-01-01",
              secret: str = SECRET):
    body = acme_provider.decision_body(order_id, session_id, outcome, born)
    return intake.post("/webhooks/acme-id", data=body, content_type="application/json",
                       headers={"X-Acme-Id-Signature": acme_provider.sign(secret, body)})


def link_of(db, order_id: str):
    with db.read() as conn:
        return conn.execute(text("SELECT provider, provider_session_id, provider_url FROM verification_sessions "
                                 "WHERE order_id = :o"), {"o": order_id}).one()


def test_a_new_provider_creates_the_link_and_its_decision_verifies_the_session(acme, db):
    intake = client_for("webhook_intake")
    order_id = f"acme-order-{uuid.uuid4().hex[:8]}"
    answer = post_order(intake, order_id)
    assert (answer.status_code, answer.json["status"]) == (200, "accepted")
    assert tuple(link_of(db, order_id)) == ("", None, None)  # no link yet, so no provider

    # The real email subscriber creates the link through acme's adapter.
    sent = deliver(client_for("send_customer_email", "cloudevent"), "customer-emails", email_job(order_id),
                   key=f"k-{order_id}", order_id=order_id)
    assert sent.status_code == 200
    [(key, session_id)] = acme_provider.CREATED
    assert key == order_id
    assert tuple(link_of(db, order_id)) == ("acme", session_id, f"https://id.acme.example/s/{session_id}")
    with db.read() as conn:
        bound = conn.execute(text("SELECT session_id, provider, superseded_at FROM provider_sessions "
                                  "WHERE order_id = :o"), {"o": order_id}).all()
    assert [tuple(r) for r in bound] == [(session_id, "acme", None)]

    # A decision naming that session on Veriff's route (correctly signed as Veriff) is not acme's.
    forged = veriff_body(order_id, 9001, verification_id=session_id)
    ignored = intake.post("/webhooks/veriff", data=forged, headers=veriff_headers(VERIFF_SECRET, VERIFF_API_KEY, forged))
    assert (ignored.status_code, ignored.json["status"]) == (200, "ignored")
    assert status_of(db, order_id) == "pending"
    [recorded] = events(db, order_id, "verification.decision_ignored")
    assert (recorded["reason"], recorded["verification_id"]) == ("unknown_session", session_id)

    # Acme's own route: a bad signature is refused, its signed approval verifies the session.
    assert post_acme(intake, order_id, session_id, 1, secret="not-the-secret").status_code == 401
    assert status_of(db, order_id) == "pending"
    verified = post_acme(intake, order_id, session_id, 1)
    assert (verified.status_code, verified.json["status"]) == (200, "accepted")
    assert status_of(db, order_id) == "verified"
    [approved] = events(db, order_id, "verification.approved")
    assert approved["verification_id"] == session_id
    with db.read() as conn:
        actor = conn.execute(text("SELECT actor FROM event_log WHERE order_id = :o AND type = 'verification.approved'"),
                             {"o": order_id}).scalar_one()
    assert actor == "acme"
    again = post_acme(intake, order_id, session_id, 1)
    assert (again.status_code, again.json["status"]) == (200, "duplicate")


def test_a_session_of_another_provider_is_not_acmes(acme, db):
    """A Veriff link sent before the switch keeps Veriff: acme's decision for its id is ignored."""
    intake = client_for("webhook_intake")
    order_id = f"acme-order-{uuid.uuid4().hex[:8]}"
    assert post_order(intake, order_id).status_code == 200
    from tests.sessions import bind_provider_session
    bind_provider_session(db, order_id, "shared-id", provider="veriff")
    answer = post_acme(intake, order_id, "shared-id", 1)
    assert (answer.status_code, answer.json["status"]) == (200, "ignored")
    assert status_of(db, order_id) == "pending"


def test_the_provider_must_be_a_line_of_the_table(app_env, database_url):
    from tests.conftest import base_env
    with pytest.raises(ConfigError) as error:
        Settings.from_env(base_env(database_url, ID_PROVIDER="acme"))  # no line: no such provider
    assert error.value.variable == "ID_PROVIDER"
    app_env(ACME_ID_SECRET=SECRET)
    body = acme_provider.decision_body("o-1", "s-1", 1, None)
    assert client_for("webhook_intake").post("/webhooks/acme-id", data=body, content_type="application/json",
                                             headers={"X-Acme-Id-Signature": acme_provider.sign(SECRET, body)}
                                             ).status_code == 404
