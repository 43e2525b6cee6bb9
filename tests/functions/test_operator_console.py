"""`operator_console` through functions-framework: IAP assertions, CSRF, pages and actions."""

from __future__ import annotations

import base64
import html
import json
import re
import time
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode

import pytest
from sqlalchemy import text

from shared.adapters.refunds import ManualRefundGateway
from shared.console import csrf
from shared.domain.messages import OrderAction, OrderPlaced
from shared.handlers import intake, refunds, timers, transitions
from tests.functions.conftest import client_for
from tests.iap_keys import AUDIENCE, IapKeys

ALICE = "alice@example.com"
SECRET = "console-test-secret"
OPERATORS = "alice@example.com, bob@example.com"


@pytest.fixture(scope="module")
def keys() -> IapKeys:
    return IapKeys.generate()


@pytest.fixture
def console(app_env, keys, tmp_path):
    app_env(CONSOLE_SECRET=SECRET, IAP_AUDIENCE=AUDIENCE,
            IAP_PUBLIC_KEYS_URL=keys.write_public(tmp_path), CONSOLE_OPERATORS=OPERATORS)
    return client_for("operator_console")


def as_alice(keys, email: str = ALICE) -> dict[str, str]:
    return {"X-Goog-IAP-JWT-Assertion": keys.assertion(email)}


def place(db, settings, order_id: str, email: str = "buyer@example.com", now: datetime | None = None) -> None:
    now = now or datetime.now(timezone.utc)
    command = OrderPlaced("orders", f"evt-{order_id}", order_id, email)
    assert intake.place_order(db, settings, command, now=now).status == "accepted"


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def events_of(db, order_id: str) -> list[tuple]:
    with db.read() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT type, actor, data FROM event_log WHERE order_id = :o ORDER BY id"), {"o": order_id})]


# ---- who may come in -------------------------------------------------------------


def test_a_valid_assertion_opens_the_console_and_names_the_operator(console, keys, db, settings, order_id):
    place(db, settings, order_id)
    response = console.get(f"/orders/{order_id}", headers=as_alice(keys))
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "signed in as alice@example.com" in html and order_id in html


@pytest.mark.parametrize("assertion", ["missing", "wrong audience", "expired", "bad signature", "wrong issuer",
                                       "garbage"])
def test_requests_without_a_valid_iap_assertion_are_refused(console, keys, db, settings, order_id, assertion):
    place(db, settings, order_id)
    tokens = {
        "missing": None,
        "wrong audience": keys.assertion(audience="/projects/1/global/backendServices/other"),
        "expired": keys.assertion(issued=time.time() - 7200, lifetime=600),
        "bad signature": keys.forged(),
        "wrong issuer": keys.assertion(issuer="https://evil.example.com"),
        "garbage": "not.a.jwt",
    }
    headers = {"X-Goog-IAP-JWT-Assertion": tokens[assertion]} if tokens[assertion] else {}
    for response in (console.get(f"/orders/{order_id}", headers=headers),
                     console.post(f"/orders/{order_id}/actions/cancel", headers=headers, data={"csrf": "x"})):
        assert response.status_code == 401
        assert order_id not in response.get_data(as_text=True)
        assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert [e[0] for e in events_of(db, order_id)] == ["order.received", "verification.requested"]


# ---- who may do what: the console's own lists, after IAP ---------------------------


@pytest.fixture
def listed_console(app_env, keys, tmp_path):
    """Operators: alice and anyone at ops.example.com; viewers: victor; verifiers: alice alone."""
    app_env(CONSOLE_SECRET=SECRET, IAP_AUDIENCE=AUDIENCE, IAP_PUBLIC_KEYS_URL=keys.write_public(tmp_path),
            CONSOLE_OPERATORS="Alice@Example.com, domain:ops.example.com", CONSOLE_VIEWERS="user:victor@example.com",
            CONSOLE_VERIFIERS="alice@example.com")
    return client_for("operator_console")


def test_someone_iap_admits_but_the_console_does_not_list_is_refused(listed_console, keys, db, settings, order_id):
    place(db, settings, order_id)
    for stranger in ("mallory@gmail.com", "eve@example.com", "ann@evil-ops.example.com", "ann@ops.example.com.evil.io"):
        for path in ("/sessions", f"/orders/{order_id}", "/funnel"):
            response = listed_console.get(path, headers=as_alice(keys, stranger))
            assert response.status_code == 403, (stranger, path)
            assert order_id not in response.get_data(as_text=True)
        forged = listed_console.post(f"/orders/{order_id}/actions/cancel", headers=as_alice(keys, stranger),
                                     data={"csrf": csrf.issue(SECRET, stranger)})
        assert forged.status_code == 403
    assert [e[0] for e in events_of(db, order_id)] == ["order.received", "verification.requested"]


def test_a_viewer_reads_and_searches_but_cannot_act(listed_console, keys, db, settings, order_id):
    place(db, settings, order_id)
    victor = as_alice(keys, "victor@example.com")
    page = listed_console.get(f"/orders/{order_id}", headers=victor)
    assert page.status_code == 200 and order_id in page.get_data(as_text=True)
    token = csrf_of(page.get_data(as_text=True))
    searched = listed_console.post("/sessions", headers=victor, data={"csrf": token, "q": order_id})
    assert searched.status_code == 200 and order_id in searched.get_data(as_text=True)
    for action, form in (("cancel", {"reason": "customer_request"}), ("extend", {"duration": "24h"}),
                         ("verify", {"reason": "id_checked_in_store"})):
        response = listed_console.post(f"/orders/{order_id}/actions/{action}", headers=victor,
                                       data={"csrf": token, **form})
        assert response.status_code == 403, action
    assert listed_console.post("/outbox/retry", headers=victor, data={"csrf": token, "outbox_id": "1"}).status_code == 403
    assert [e[0] for e in events_of(db, order_id)] == ["order.received", "verification.requested"]


def test_operators_by_email_or_domain_act_and_only_verifiers_verify(listed_console, keys, db, settings, order_id):
    place(db, settings, order_id)
    ann = as_alice(keys, "Ann@Ops.Example.com")  # on the list by her domain, in any case
    token = csrf_of(listed_console.get(f"/orders/{order_id}", headers=ann).get_data(as_text=True))
    refused = listed_console.post(f"/orders/{order_id}/actions/verify", headers=ann,
                                  data={"csrf": token, "reason": "id_checked_in_store"})
    assert refused.status_code == 403
    extended = listed_console.post(f"/orders/{order_id}/actions/extend", headers=ann,
                                   data={"csrf": token, "duration": "100h"})
    assert extended.status_code == 303
    alice_token = csrf_of(listed_console.get(f"/orders/{order_id}", headers=as_alice(keys)).get_data(as_text=True))
    verified = listed_console.post(f"/orders/{order_id}/actions/verify", headers=as_alice(keys),
                                   data={"csrf": alice_token, "reason": "id_checked_in_store"})
    assert verified.status_code == 303
    assert [e[:2] for e in events_of(db, order_id)][2:] == [
        ("verification.deadline_extended", "operator:Ann@Ops.Example.com"),
        ("verification.approved", "operator:alice@example.com")]


def test_behind_iap_the_console_refuses_to_serve_without_its_list(app_env, keys, tmp_path, db, settings, order_id):
    place(db, settings, order_id)
    app_env(CONSOLE_SECRET=SECRET, IAP_AUDIENCE=AUDIENCE, IAP_PUBLIC_KEYS_URL=keys.write_public(tmp_path))
    response = client_for("operator_console").get(f"/orders/{order_id}", headers=as_alice(keys))
    assert response.status_code == 503 and order_id not in response.get_data(as_text=True)
    from shared.config import ConsoleSettings
    from shared.errors import ConfigError
    for bad in ("allUsers", "allAuthenticatedUsers", "group:ops@example.com", "domain:", "alice"):
        with pytest.raises(ConfigError, match="CONSOLE_OPERATORS"):
            ConsoleSettings.from_env({"CONSOLE_OPERATORS": f"alice@example.com, {bad}"})


DEV_TOKEN = "dev-token-for-the-console-tests-0123456789"  # as CONSOLE_DEV_TOKEN; devstack.run makes a random one


@pytest.fixture
def dev_console(app_env):
    """CONSOLE_AUTH=dev, as the local stack runs it; the test client is 127.0.0.1 with Host localhost."""
    app_env(CONSOLE_SECRET=SECRET, CONSOLE_AUTH="dev", CONSOLE_DEV_TOKEN=DEV_TOKEN)
    return client_for("operator_console")


def signed_in(client):
    """Open the URL the local stack printed; the client keeps the cookie."""
    response = client.get(f"/sessions?dev_token={DEV_TOKEN}")
    assert response.status_code == 303, response.get_data(as_text=True)
    return client


def test_a_tunnel_to_127_0_0_1_without_the_sign_in_is_not_the_dev_identity(dev_console, db, settings, order_id):
    # `ssh -R` or ngrok TCP: the socket is 127.0.0.1, the Host says localhost, no forwarding
    # header; only the token the local stack printed is missing.
    place(db, settings, order_id)
    for path in ("/sessions", f"/orders/{order_id}", "/funnel", "/audit"):
        response = dev_console.get(path, headers={"Host": "localhost:8086"})
        body = response.get_data(as_text=True)
        assert response.status_code == 403, path
        assert "dev@localhost" not in body and order_id not in body
        assert "Open the console URL the local stack printed" in body
    forged = dev_console.post(f"/orders/{order_id}/actions/cancel",
                              data={"csrf": csrf.issue(SECRET, "dev@localhost"), "reason": "other"})
    assert forged.status_code == 403
    # Neither the token itself as the cookie, nor the cookie another token makes, signs in.
    from shared.console.auth import DEV_COOKIE, dev_cookie_of
    for cookie in (DEV_TOKEN, dev_cookie_of("another-token-of-another-run-0123456789"), "ü"):
        dev_console.set_cookie(DEV_COOKIE, cookie)
        assert dev_console.get("/sessions").status_code == 403, cookie
    assert [e[0] for e in events_of(db, order_id)] == ["order.received", "verification.requested"]


def test_the_printed_url_signs_the_browser_in_with_a_cookie_and_leaves_the_address(dev_console, db, settings,
                                                                                   order_id):
    place(db, settings, order_id)
    response = dev_console.get(f"/sessions?status=pending&dev_token={DEV_TOKEN}&due=")
    assert response.status_code == 303
    assert response.headers["Location"] == "/sessions?status=pending&due="
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("console_dev=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Path=/" in cookie and DEV_TOKEN not in cookie and DEV_TOKEN not in response.get_data(as_text=True)
    page = dev_console.get("/sessions?status=pending")
    assert page.status_code == 200 and "signed in as dev@localhost" in page.get_data(as_text=True)
    assert order_id in page.get_data(as_text=True)
    story = dev_console.get(f"/orders/{order_id}")
    assert story.status_code == 200 and order_id in story.get_data(as_text=True)
    done = dev_console.post(f"/orders/{order_id}/actions/extend",
                            data={"csrf": csrf_of(story.get_data(as_text=True)), "duration": "90h"})
    assert done.status_code == 303
    assert ("verification.deadline_extended", "operator:dev@localhost") in [e[:2] for e in events_of(db, order_id)]
    # Any page's URL with the token leads back to that page without it.
    again = dev_console.get(f"/orders/{order_id}?dev_token={DEV_TOKEN}")
    assert again.status_code == 303 and again.headers["Location"] == f"/orders/{order_id}"


def test_a_wrong_token_is_refused_and_sets_no_cookie(dev_console, db, settings, order_id):
    place(db, settings, order_id)
    for wrong in ("nope", DEV_TOKEN[:-1], DEV_TOKEN + "x", "", "ü" * 40):
        response = dev_console.get("/sessions", query_string={"dev_token": wrong})
        body = response.get_data(as_text=True)
        assert response.status_code == 403 and "Set-Cookie" not in response.headers, wrong
        assert "dev@localhost" not in body and order_id not in body and (not wrong or wrong not in body)
        assert "Open the console URL the local stack printed" in body
    assert dev_console.get("/sessions").status_code == 403


def test_the_dev_identity_serves_127_0_0_1_only_even_signed_in(dev_console, db, settings, order_id):
    place(db, settings, order_id)
    client = signed_in(dev_console)
    assert "signed in as dev@localhost" in client.get("/sessions").get_data(as_text=True)
    assert client.get("/sessions", environ_overrides={"REMOTE_ADDR": "10.1.2.3"}).status_code == 403
    assert client.get("/sessions", headers={"Host": "console.example.com"}).status_code == 403
    # A forwarder on this machine (nginx, ngrok) connects from 127.0.0.1 with Host 127.0.0.1,
    # but names who it forwards for: not the dev identity, and no sign-in through it either.
    for header, value in (("X-Forwarded-For", "203.0.113.9"), ("Forwarded", "for=203.0.113.9"),
                          ("X-Real-IP", "203.0.113.9"), ("Via", "1.1 ngrok"), ("X-Forwarded-Host", "a.ngrok.app")):
        forwarded = client.get("/sessions", headers={header: value})
        assert forwarded.status_code == 403 and "dev@localhost" not in forwarded.get_data(as_text=True), header
        sign_in = client.get(f"/sessions?dev_token={DEV_TOKEN}", headers={header: value})
        assert sign_in.status_code == 403 and "Set-Cookie" not in sign_in.headers, header
    remote = client.get(f"/sessions?dev_token={DEV_TOKEN}", environ_overrides={"REMOTE_ADDR": "10.1.2.3"})
    assert remote.status_code == 403 and "Set-Cookie" not in remote.headers


def test_the_dev_token_is_never_logged_nor_shown(dev_console, db, settings, order_id, captured_logs):
    place(db, settings, order_id)
    bodies = [dev_console.get(f"/sessions?dev_token={DEV_TOKEN}-wrong"), dev_console.get("/sessions"),
              dev_console.get(f"/sessions?dev_token={DEV_TOKEN}"), dev_console.get("/sessions"),
              dev_console.get(f"/orders/{order_id}")]
    assert [r.status_code for r in bodies] == [403, 403, 303, 200, 200]
    for response in bodies:
        assert DEV_TOKEN not in response.get_data(as_text=True)
        assert DEV_TOKEN not in str(response.headers)
    assert captured_logs.getvalue() and DEV_TOKEN not in captured_logs.getvalue()


def test_the_dev_console_does_not_start_without_its_token_and_never_on_cloud_run(app_env, monkeypatch, db,
                                                                                 settings, order_id):
    from shared import bootstrap
    from shared.errors import ConfigError

    place(db, settings, order_id)
    for token in (None, "", "too-short-0123456789"):
        app_env(CONSOLE_SECRET=SECRET, CONSOLE_AUTH="dev", FUNCTION_TARGET="operator_console")
        if token is None:
            monkeypatch.delenv("CONSOLE_DEV_TOKEN", raising=False)
        else:
            monkeypatch.setenv("CONSOLE_DEV_TOKEN", token)
        with pytest.raises(ConfigError) as error:
            bootstrap.check_at_start("operator_console", "CONSOLE_SECRET")
        assert error.value.variable == "CONSOLE_DEV_TOKEN" and "CONSOLE_AUTH=dev" in str(error.value)
        monkeypatch.delenv("FUNCTION_TARGET")
        bootstrap.reset()
        response = client_for("operator_console").get("/sessions")
        assert response.status_code == 503 and order_id not in response.get_data(as_text=True)
    app_env(CONSOLE_SECRET=SECRET, CONSOLE_AUTH="dev", CONSOLE_DEV_TOKEN=DEV_TOKEN, K_SERVICE="operator-console")
    response = client_for("operator_console").get("/sessions")
    assert response.status_code == 503 and "dev@localhost" not in response.get_data(as_text=True)
    response = client_for("operator_console").get(f"/sessions?dev_token={DEV_TOKEN}")
    assert response.status_code == 503 and "Set-Cookie" not in response.headers


def test_every_page_carries_the_security_headers(console, keys, db, settings, order_id):
    place(db, settings, order_id)
    for path in ("/sessions", f"/orders/{order_id}", "/funnel", "/assets/console.css", "/orders/nope"):
        response = console.get(path, headers=as_alice(keys))
        assert response.status_code in (200, 404)
        for header in ("Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options", "Cache-Control"):
            assert header in response.headers, (path, header)


# ---- CSRF ------------------------------------------------------------------------


def test_a_post_without_a_valid_csrf_token_is_refused(console, keys, db, settings, order_id):
    place(db, settings, order_id)
    bob_token = csrf_of(console.get(f"/orders/{order_id}", headers=as_alice(keys, "bob@example.com"))
                        .get_data(as_text=True))
    for form in ({}, {"csrf": "123.abc"}, {"csrf": bob_token}):
        response = console.post(f"/orders/{order_id}/actions/cancel", headers=as_alice(keys), data=form)
        assert response.status_code == 403
    with db.read() as conn:
        assert conn.execute(text("SELECT status FROM verification_sessions WHERE order_id = :o"),
                            {"o": order_id}).scalar() == "pending"


# ---- actions record the IAP identity -----------------------------------------------


def post_action(console, keys, order_id: str, action: str, **form):
    token = csrf.issue(SECRET, ALICE)
    return console.post(f"/orders/{order_id}/actions/{action}", headers=as_alice(keys),
                        data={"csrf": token, **form})


def test_verify_with_a_reason_code_records_the_operator(console, keys, db, settings, order_id):
    place(db, settings, order_id)
    assert post_action(console, keys, order_id, "verify").status_code == 400  # a reason is required
    response = post_action(console, keys, order_id, "verify", reason="id_checked_in_store")
    assert response.status_code == 303 and "outcome=accepted" in response.headers["Location"]
    approved = [e for e in events_of(db, order_id) if e[0] == "verification.approved"]
    assert approved == [("verification.approved", "operator:alice@example.com",
                         {**approved[0][2], "manual": True, "reason": "id_checked_in_store"})]


def published_events(db, order_id: str) -> list[dict]:
    """The event messages this order's outbox publishes on verification-events (what the relay
    sends, and what is exported from there)."""
    with db.read() as conn:
        return [r[0] for r in conn.execute(text(
            "SELECT payload FROM outbox WHERE order_id = :o AND payload->>'topic' = 'verification-events' "
            "ORDER BY id"), {"o": order_id})]


def notes_of(db, order_id: str) -> list[tuple]:
    with db.read() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT e.type, n.note FROM operator_notes n JOIN event_log e USING (event_id) "
            "WHERE n.order_id = :o ORDER BY e.id"), {"o": order_id})]


def test_a_free_text_reason_is_refused_and_nothing_is_recorded(console, keys, db, settings, order_id):
    """Issue 24: the reason is a code from a fixed list; free text (which invited names, dates
    of birth, licence numbers into an event kept forever and published) is a 400."""
    place(db, settings, order_id)
    for reason in ("ID checked in store", "Jane Doe, born 2001-02-03, licence D123", "ID_CHECKED_IN_STORE"):
        response = post_action(console, keys, order_id, "verify", reason=reason)
        assert response.status_code == 400, reason
        body = response.get_data(as_text=True)
        assert "unknown reason code" in body and "id_checked_in_store" in body and reason not in body
    assert post_action(console, keys, order_id, "cancel", reason="because").status_code == 400
    assert post_action(console, keys, order_id, "cancel").status_code == 400  # a cancel needs one too
    # `other` says nothing on its own: it needs a note.
    assert post_action(console, keys, order_id, "verify", reason="other").status_code == 400
    assert [e[0] for e in events_of(db, order_id)] == ["order.received", "verification.requested"]
    assert notes_of(db, order_id) == []


def test_the_note_stays_in_the_database_never_in_the_event_or_its_message(console, keys, db, settings, order_id):
    place(db, settings, order_id)
    note = "Customer showed a passport at the Leeds shop; Jane Doe 1990-04-01"
    assert post_action(console, keys, order_id, "verify", reason="id_checked_in_store",
                       note="x" * 201).status_code == 400  # at most 200 characters
    response = post_action(console, keys, order_id, "verify", reason="id_checked_in_store", note=note)
    assert response.status_code == 303 and "outcome=accepted" in response.headers["Location"]
    assert notes_of(db, order_id) == [("verification.approved", note)]
    with db.read() as conn:
        logged = conn.execute(text("SELECT count(*) FROM event_log WHERE data::text LIKE '%Leeds%'")).scalar()
        queued = conn.execute(text("SELECT count(*) FROM outbox WHERE payload::text LIKE '%Leeds%'")).scalar()
    assert logged == 0 and queued == 0
    approved = [m for m in published_events(db, order_id) if m["attributes"]["type"] == "verification.approved"]
    assert len(approved) == 1 and approved[0]["data"]["data"]["reason"] == "id_checked_in_store"
    assert "note" not in approved[0]["data"]["data"] and "Leeds" not in json.dumps(approved)
    # Staff see it on the order page, beside the event; the form offers codes, not free text.
    page = console.get(f"/orders/{order_id}", headers=as_alice(keys)).get_data(as_text=True)
    assert html.escape(note) in page and 'class="operator-note"' in page


def test_the_order_page_offers_reason_codes_and_a_short_note(console, keys, db, settings, order_id):
    place(db, settings, order_id)
    page = console.get(f"/orders/{order_id}", headers=as_alice(keys)).get_data(as_text=True)
    verify = re.search(r'actions/verify">(.*?)</form>', page, re.S).group(1)
    assert '<select name="reason" required>' in verify and 'value="id_checked_in_store"' in verify
    assert '<textarea name="note"' in verify and 'maxlength="200"' in verify
    assert 'input name="reason"' not in page  # no free-text reason anywhere
    cancel = re.search(r'actions/cancel">(.*?)</form>', page, re.S).group(1)
    assert 'value="duplicate_order"' in cancel and 'value="id_checked_in_store"' not in cancel


def test_extend_shows_the_new_timeline_entry(console, keys, db, settings, order_id):
    place(db, settings, order_id)
    response = post_action(console, keys, order_id, "extend", duration="100h")
    assert response.status_code == 303
    page = console.get(response.headers["Location"], headers=as_alice(keys)).get_data(as_text=True)
    assert "extend: accepted" in page and "verification.deadline_extended" in page
    assert ("verification.deadline_extended", "operator:alice@example.com") in [e[:2] for e in events_of(db, order_id)]
    with db.read() as conn:
        version, timers_ = conn.execute(text(
            "SELECT s.deadline_version, array_agg(t.state ORDER BY t.deadline_version) FROM verification_sessions s "
            "JOIN countdown_timers t ON t.order_id = s.order_id AND t.kind = 'deadline' "
            "WHERE s.order_id = :o GROUP BY 1"), {"o": order_id}).one()
    assert version == 2 and timers_ == ["cancelled", "scheduled"]


def test_extend_on_a_session_in_review_says_it_does_not_expire_meanwhile(console, keys, db, settings, order_id):
    place(db, settings, order_id)
    with db.transaction() as conn:
        conn.execute(text("UPDATE verification_sessions SET status = 'in_review' WHERE order_id = :o"),
                     {"o": order_id})
    location = post_action(console, keys, order_id, "extend", duration="100h").headers["Location"]
    page = html.unescape(console.get(location, headers=as_alice(keys)).get_data(as_text=True))
    assert ("extend: accepted (in review, the session does not expire; "
            "the new deadline counts if it goes back to pending)") in page


def test_only_the_consoles_own_redirect_shows_an_outcome_notice(console, keys, db, settings, order_id):
    """A link someone crafts (`?done=verify&outcome=accepted`) must not tell staff a verification
    went through; the redirect after a real action does, to the operator who took it."""
    place(db, settings, order_id)
    crafted = console.get(f"/orders/{order_id}?done=verify&outcome=accepted&detail=forged+note",
                          headers=as_alice(keys)).get_data(as_text=True)
    assert "verify: accepted" not in crafted and "forged note" not in crafted
    location = post_action(console, keys, order_id, "extend", duration="100h").headers["Location"]
    assert "extend: accepted" in console.get(location, headers=as_alice(keys)).get_data(as_text=True)
    forged = location.replace("done=extend", "done=verify")
    assert "verify: accepted" not in console.get(forged, headers=as_alice(keys)).get_data(as_text=True)
    other = console.get(location, headers=as_alice(keys, "bob@example.com")).get_data(as_text=True)
    assert "extend: accepted" not in other  # sealed for alice


def test_cancel_then_a_second_action_is_ignored_not_applied(console, keys, db, settings, order_id):
    place(db, settings, order_id)
    assert "outcome=accepted" in post_action(console, keys, order_id, "cancel",
                                             reason="duplicate_order").headers["Location"]
    assert "outcome=ignored" in post_action(console, keys, order_id, "resend-link").headers["Location"]
    assert [e[:2] for e in events_of(db, order_id)][-1] == ("order.cancelled", "operator:alice@example.com")


def test_resend_link_while_the_provider_reviews_tells_staff_why_nothing_was_sent(console, keys, db, settings,
                                                                                   order_id):
    from shared.domain.messages import ProviderDecision
    from shared.domain.model import Decision
    from tests.sessions import bind_provider_session

    place(db, settings, order_id)
    bind_provider_session(db, order_id, "vs-review")
    review = ProviderDecision("veriff", f"r-{order_id}", order_id, Decision.REVIEW, "vs-review", 9121)
    assert intake.record_decision(db, settings, review, now=datetime.now(timezone.utc)).status == "accepted"
    location = post_action(console, keys, order_id, "resend-link").headers["Location"]
    page = console.get(location, headers=as_alice(keys)).get_data(as_text=True)
    assert "resend-link: ignored (the provider is deciding on the customer&#39;s submission" in page
    assert "verification.link_resent" not in [e[0] for e in events_of(db, order_id)]


def test_resend_link_opens_a_fresh_provider_session_and_queues_a_new_link_email(console, keys, db, settings,
                                                                                order_id):
    place(db, settings, order_id)
    with db.transaction() as conn:
        conn.execute(text("UPDATE verification_sessions SET provider_session_id = 'old', provider_url = 'http://x/old' "
                          "WHERE order_id = :o"), {"o": order_id})
    assert "outcome=accepted" in post_action(console, keys, order_id, "resend-link").headers["Location"]
    with db.read() as conn:
        session = conn.execute(text("SELECT provider_session_id FROM verification_sessions WHERE order_id = :o"),
                               {"o": order_id}).scalar()
        links = conn.execute(text(
            "SELECT payload->'attributes'->>'message_key' FROM outbox WHERE order_id = :o "
            "AND payload->>'topic' = 'customer-emails' ORDER BY id"), {"o": order_id}).scalars().all()
    assert session is None
    assert links == [f"{order_id}:link:0", f"{order_id}:link:1"]
    assert ("verification.link_resent", "operator:alice@example.com") in [e[:2] for e in events_of(db, order_id)]


def expire_with_manual_refund(db, settings, order_id: str) -> None:
    """An order whose deadline passed and whose refund the manual backend handed to an operator."""
    past = datetime.now(timezone.utc) - timedelta(days=10)
    place(db, settings, order_id, now=past)
    with db.transaction() as conn:
        conn.execute(text("INSERT INTO email_sends (order_id, kind, reminder_index, state) "
                          "VALUES (:o, 'link', 0, 'sent')"), {"o": order_id})
    assert timers.expire(db, order_id, now=datetime.now(timezone.utc)).status == "accepted"
    outcome = refunds.request_refund(db, settings, ManualRefundGateway(), OrderAction(order_id, "refund", "expired"),
                                         now=datetime.now(timezone.utc))
    assert outcome.detail == "manual"


def test_refund_done_closes_a_manual_refund_once(console, keys, db, settings, order_id):
    expire_with_manual_refund(db, settings, order_id)
    page = console.get(f"/orders/{order_id}", headers=as_alice(keys)).get_data(as_text=True)
    assert "Refund done" in page
    assert post_action(console, keys, order_id, "refund-done", reason="refunded in POS").status_code == 400
    assert "outcome=accepted" in post_action(console, keys, order_id, "refund-done", reason="refunded_at_till",
                                             note="till 3, receipt 1142").headers["Location"]
    assert "outcome=ignored" in post_action(console, keys, order_id, "refund-failed").headers["Location"]
    completed = [e for e in events_of(db, order_id) if e[0] == "refund.completed"]
    assert [e[1] for e in completed] == ["operator:alice@example.com"]
    assert completed[0][2] == {"manual": True, "previous": "manual", "reason": "refunded_at_till"}
    assert notes_of(db, order_id) == [("refund.completed", "till 3, receipt 1142")]
    with db.read() as conn:
        refund, published = conn.execute(text(
            "SELECT s.refund_status, count(o.id) FROM verification_sessions s LEFT JOIN outbox o "
            "ON o.order_id = s.order_id AND o.payload->'attributes'->>'type' = 'refund.completed' "
            "WHERE s.order_id = :o GROUP BY 1"), {"o": order_id}).one()
    assert refund == "refunded" and published == 1  # published: the funnel counts it


def test_retry_puts_a_parked_row_back_in_line(console, keys, db, settings, order_id):
    place(db, settings, order_id)
    with db.transaction() as conn:
        row = conn.execute(text("UPDATE outbox SET dead_at = now(), last_error = 'InvalidArgument' WHERE id = "
                                "(SELECT min(id) FROM outbox WHERE order_id = :o) RETURNING id"),
                           {"o": order_id}).scalar()
    page = console.get(f"/orders/{order_id}?x=1", headers=as_alice(keys)).get_data(as_text=True)
    assert "parked" in page
    response = console.post("/outbox/retry", headers=as_alice(keys),
                            data={"csrf": csrf_of(page), "outbox_id": str(row), "order_id": order_id})
    assert "outcome=accepted" in response.headers["Location"]
    with db.read() as conn:
        assert conn.execute(text("SELECT dead_at FROM outbox WHERE id = :i"), {"i": row}).scalar() is None
    assert ("outbox.retried", "operator:alice@example.com") in [e[:2] for e in events_of(db, order_id)]


# ---- the list, the order page, the funnel ---------------------------------------------


def order_ids_on(html: str) -> list[str]:
    return re.findall(r'<a href="/orders/([^"]+)">', html)


def search(console, keys, **form):
    return console.post("/sessions", headers=as_alice(keys), data={"csrf": csrf.issue(SECRET, ALICE), **form})


def test_search_by_email_pages_through_every_session_once(console, keys, db, settings):
    email = f"many-{uuid.uuid4().hex[:8]}@example.com"
    created = {f"page-{uuid.uuid4().hex[:10]}" for _ in range(53)}
    for order_id in created:
        place(db, settings, order_id, email)
    first = search(console, keys, q=email).get_data(as_text=True)
    assert len(order_ids_on(first)) == 50
    # The email is POSTed, page after page: no URL the platform or the browser records carries it.
    assert email not in " ".join(re.findall(r'(?:href|action)="([^"]*)"', first))
    next_form = re.search(r'<form method="post" action="/sessions" class="next">(.*?)</form>', first, re.S).group(1)
    fields = {name: html.unescape(value)
              for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', next_form)}
    assert fields["q"] == email and fields["after"]
    second = console.post("/sessions", headers=as_alice(keys), data=fields).get_data(as_text=True)
    assert len(order_ids_on(second)) == 3 and 'class="next"' not in second
    assert set(order_ids_on(first)) | set(order_ids_on(second)) == created
    assert 'method="post" action="/sessions" class="filters"' in first
    assert search(console, keys, q=email, csrf="").status_code == 403  # a POST like any other: CSRF-checked


def test_search_by_email_finds_it_in_any_case(console, keys, db, settings):
    """Stores send addresses as the customer typed them; staff type them as they hear them."""
    tag = uuid.uuid4().hex[:8]
    mixed, lower = f"John.Smith-{tag}@Gmail.com", f"jane-{tag}@example.com"
    place(db, settings, f"mixed-{tag}", mixed)
    place(db, settings, f"lower-{tag}", lower)

    def found(term: str) -> list[str]:
        return order_ids_on(search(console, keys, q=term).get_data(as_text=True))

    assert found(mixed.lower()) == found(mixed.upper()) == found(mixed) == [f"mixed-{tag}"]
    assert found(lower.upper()) == [f"lower-{tag}"]


def test_an_approval_on_a_superseded_link_puts_the_open_session_in_needs_attention(console, keys, db, settings):
    """Veriff lets a customer resubmit in the session a 9103 was for, while our next email has
    opened a fresh one: the approval is for a superseded session and ignored (DESIGN), so
    without a person the adult is refunded at the deadline."""
    from datetime import date

    from shared.domain.messages import ProviderDecision
    from shared.domain.model import Decision
    from tests.sessions import bind_provider_session

    tag = uuid.uuid4().hex[:8]
    email = f"superseded-{tag}@example.com"
    now = datetime.now(timezone.utc)
    ids = {name: f"{name}-{tag}" for name in ("adult", "minor", "closed")}
    for order_id in ids.values():
        place(db, settings, order_id, email, now=now - timedelta(hours=2))
        bind_provider_session(db, order_id, f"old-{order_id}")
        assert transitions.resend_link(db, order_id, operator="alice", now=now - timedelta(hours=2)).accepted
        bind_provider_session(db, order_id, f"new-{order_id}")
    for name, born in (("adult", date(1990, 1, 1)), ("minor", date(now.year - 17, 1, 1)),
                       ("closed", date(1990, 1, 1))):
        old = ProviderDecision("veriff", f"a-{ids[name]}", ids[name], Decision.APPROVED, f"old-{ids[name]}", 9001,
                               birth_date=born, decided_at=now)
        assert intake.record_decision(db, settings, old, now=now).detail == "superseded_session"
    assert transitions.operator_action(db, ids["closed"], "verify", operator="alice", now=now,
                                       reason="id_checked_in_store").accepted

    html = search(console, keys, q=email, attention="1").get_data(as_text=True)
    assert set(order_ids_on(html)) == {ids["adult"]}


def test_needs_attention_lists_paid_orders_that_opened_no_session(console, keys, db, settings):
    """A stale order and a sale without a customer email open no session, so no row of the
    list showed them: nobody asked those customers for their age."""
    from shared.domain.messages import IgnoredDelivery

    tag = uuid.uuid4().hex[:8]
    now = datetime.now(timezone.utc)
    stale, no_email, later, returned, old = (f"{name}-{tag}" for name in ("stale", "noemail", "later", "return",
                                                                          "old"))
    assert intake.place_order(db, settings, OrderPlaced("orders", f"e-{stale}", stale, "a@example.com",
                                                        ordered_at=now - timedelta(days=30)), now=now).detail \
        == "order is older than MAX_ORDER_AGE: recorded for the operator"
    for key, reason, at in ((f"lightspeed:{no_email}", "no_customer_email", now),
                            (f"lightspeed:{later}", "no_customer_email", now - timedelta(hours=1)),
                            (f"lightspeed:{returned}", "return", now),
                            (f"lightspeed:{old}", "no_customer_email", now - timedelta(days=15))):
        intake.record_ignored(db, settings, IgnoredDelivery("lightspeed", f"e-{key}", key, reason=reason), now=at)
    # The sale got its customer's email in a later version: it opened a session.
    assert intake.place_order(db, settings, OrderPlaced("lightspeed", f"e2-{later}", f"lightspeed:{later}",
                                                        "b@example.com", ordered_at=now), now=now).accepted

    html = console.get("/sessions?attention=1", headers=as_alice(keys)).get_data(as_text=True)
    section = html.split("Orders that opened no session", 1)[1]
    listed = set(re.findall(r'href="/orders/([^"]+)"', section))
    mine = {o for o in listed if tag in o}
    assert mine == {stale, f"lightspeed%3A{no_email}"}, mine
    assert "ordered longer ago than MAX_ORDER_AGE" in section and "without a customer email" in section
    plain = console.get("/sessions", headers=as_alice(keys)).get_data(as_text=True)
    assert "Orders that opened no session" not in plain


def test_filters_status_overdue_due_and_attention(console, keys, db, settings):
    tag = uuid.uuid4().hex[:8]
    email = f"filters-{tag}@example.com"
    now = datetime.now(timezone.utc)
    ids = {name: f"{name}-{tag}" for name in ("fresh", "overdue", "review", "soon")}
    place(db, settings, ids["fresh"], email)
    place(db, settings, ids["overdue"], email, now=now - timedelta(days=4))
    place(db, settings, ids["review"], email)
    place(db, settings, ids["soon"], email, now=now - timedelta(hours=71))
    with db.transaction() as conn:
        conn.execute(text("UPDATE verification_sessions SET status = 'in_review' WHERE order_id = :o"),
                     {"o": ids["review"]})

    def listed(query: str) -> set[str]:
        html = search(console, keys, q=email, **dict(part.split("=") for part in query.split("&") if part)).get_data(
            as_text=True)
        return set(order_ids_on(html))

    assert listed("status=in_review") == {ids["review"]}
    assert listed("overdue=1") == {ids["overdue"]}
    assert listed("due=2") == {ids["soon"]}
    assert listed("attention=1") == {ids["review"]}
    assert listed("") == set(ids.values())
    assert set(order_ids_on(console.get(f"/sessions?q={ids['soon']}", headers=as_alice(keys))
                            .get_data(as_text=True))) == {ids["soon"]}
    assert console.get("/sessions?status=bogus", headers=as_alice(keys)).status_code == 400
    assert console.get("/sessions?after=%%%", headers=as_alice(keys)).status_code == 400


def test_order_page_shows_timeline_timers_emails_and_deliveries(console, keys, db, settings, order_id):
    place(db, settings, order_id, "story@example.com")
    html = console.get(f"/orders/{order_id}", headers=as_alice(keys)).get_data(as_text=True)
    for expected in ("pending", "story@example.com", "order.received", "verification.requested",
                     "reminder", "deadline", "scheduled", "task.create", "customer-emails", "in 2 d 23 h"):
        assert expected in html, expected
    assert console.get("/orders/no-such-order", headers=as_alice(keys)).status_code == 404


def test_funnel_page_draws_the_chart_and_conversion(console, keys, db):
    day = datetime(2026, 3, 10, 12, tzinfo=timezone.utc).date()
    with db.transaction() as conn:
        conn.execute(text("DELETE FROM funnel_daily WHERE day = :d"), {"d": day})
        conn.execute(text("INSERT INTO funnel_daily (day, metric, count) VALUES "
                          "(:d, 'orders_received', 8), (:d, 'verified', 6), (:d, 'refunds_completed', 1)"), {"d": day})
    html = console.get("/funnel?range=2026-03-09..2026-03-11", headers=as_alice(keys)).get_data(as_text=True)
    assert "75.0 %" in html and "<svg" in html and html.count("<rect") >= 12
    assert "2026-03-10 received: 8" in html and "03-09" in html
    assert console.get("/funnel?range=yesterday-ish", headers=as_alice(keys)).status_code == 400


# ---- the local provider page, and what is logged -----------------------------------


def test_the_provider_page_exists_only_on_local_stacks(console, keys, app_env, db, settings, order_id):
    place(db, settings, order_id)
    with db.transaction() as conn:
        conn.execute(text("UPDATE verification_sessions SET provider_session_id = :s WHERE order_id = :o"),
                     {"s": f"sess-{order_id}", "o": order_id})
    assert console.get(f"/verify/sess-{order_id}", headers=as_alice(keys)).status_code == 404  # IAP: cloud
    app_env(CONSOLE_SECRET=SECRET, CONSOLE_AUTH="dev", CONSOLE_DEV_TOKEN=DEV_TOKEN,
            LOCAL_INTAKE_URL="http://127.0.0.1:9")
    local = client_for("operator_console")
    # The customer's browser opens the emailed link without the console's sign-in cookie.
    page = local.get(f"/verify/sess-{order_id}")
    assert page.status_code == 200 and order_id in page.get_data(as_text=True)
    assert local.get("/verify/sess-unknown").status_code == 404
    assert local.post(f"/verify/sess-{order_id}", data={"decision": "approved"}).status_code == 403
    sent = local.post(f"/verify/sess-{order_id}", data={"decision": "approved", "dob": "1990-01-01",
                                                        "csrf": csrf_of(page.get_data(as_text=True))})
    assert sent.status_code == 503  # it tried the (closed) local intake: past the identity and CSRF
    assert local.get("/sessions").status_code == 403  # and the stand-in opens no console page
    # ... from this machine only, as the console.
    assert local.get(f"/verify/sess-{order_id}", environ_overrides={"REMOTE_ADDR": "10.1.2.3"}).status_code == 403
    assert local.get(f"/verify/sess-{order_id}", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 403


def test_provider_page_body_is_a_veriff_decision_for_that_session():
    from shared.config import ProviderSettings, VeriffSettings
    from shared.domain.model import Decision
    from shared.providers import registry
    from shared.providers.veriff.inbound import VeriffSource, parse_veriff_decision

    settings = ProviderSettings(veriff=VeriffSettings(shared_secret="vs", api_key="ak"))
    path, body, headers = registry.local_decision(settings, "veriff", "o-1", "sess-1", Decision.DECLINED, "2010-01-02",
                                                  datetime(2026, 12, 1, tzinfo=timezone.utc))
    assert path == "/webhooks/veriff"
    VeriffSource("vs", "ak").verify(headers, body, datetime(2026, 12, 1, tzinfo=timezone.utc))  # signed as Veriff signs
    decision = parse_veriff_decision(body)
    assert (decision.order_id, decision.verification_id, str(decision.decision)) == ("o-1", "sess-1", "declined")
    assert b'"dateOfBirth": "2010-01-02"' in body


def test_console_logs_never_carry_a_customer_email(console, keys, db, settings, order_id, captured_logs):
    email = f"private-{uuid.uuid4().hex[:6]}@example.com"
    place(db, settings, order_id, email)
    assert search(console, keys, q=email).status_code == 200
    assert post_action(console, keys, order_id, "extend", duration="90h").status_code == 303
    assert post_action(console, keys, order_id, "verify", reason=email).status_code == 400  # not a code
    assert post_action(console, keys, order_id, "verify", reason="other", note=email).status_code == 303
    assert console.get(f"/sessions?q={email}").status_code == 401
    stream = captured_logs
    logged = stream.getvalue()
    assert "operator action extend" in logged and order_id in logged
    assert email not in logged


# ---- one order id, two sources (issue 10 item 5) ---------------------------------------------


def place_sale(db, settings, sale_id: str) -> str:
    """A Lightspeed sale's session, as its webhook opens it; its key."""
    key = f"lightspeed:{sale_id}"
    command = OrderPlaced("lightspeed", f"{sale_id}:CLOSED:1", key, "till@example.com")
    assert intake.place_order(db, settings, command, now=datetime.now(timezone.utc)).status == "accepted"
    return key


def test_search_by_a_shared_id_lists_every_source_and_each_page_names_the_other(console, keys, db, settings,
                                                                                 order_id):
    place(db, settings, order_id, "web@example.com")
    sale = place_sale(db, settings, order_id)
    listed = console.get(f"/sessions?q={order_id}", headers=as_alice(keys)).get_data(as_text=True)
    assert set(order_ids_on(listed)) == {order_id, sale.replace(":", "%3A")}
    page = console.get(f"/orders/{order_id}", headers=as_alice(keys)).get_data(as_text=True)
    assert "web@example.com" in page and "till@example.com" not in page
    assert re.search(r'class="same-order-id"><a href="/orders/lightspeed%3A' + order_id, page)
    sale_page = console.get(f"/orders/{sale.replace(':', '%3A')}", headers=as_alice(keys))
    html = sale_page.get_data(as_text=True)
    assert sale_page.status_code == 200 and "till@example.com" in html and "web@example.com" not in html
    assert f'<code class="store-order-id">{order_id}</code>' in html and "lightspeed" in html


def test_a_bare_sale_id_leads_to_the_sale(console, keys, db, settings, order_id):
    sale = place_sale(db, settings, order_id)
    response = console.get(f"/orders/{order_id}", headers=as_alice(keys))
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/orders/lightspeed%3A{order_id}")
    listed = console.get(f"/sessions?q={order_id}", headers=as_alice(keys)).get_data(as_text=True)
    assert order_ids_on(listed) == [sale.replace(":", "%3A")]


def test_a_console_action_on_the_sale_leaves_the_generic_order_alone(console, keys, db, settings, order_id):
    place(db, settings, order_id)
    sale = place_sale(db, settings, order_id)
    response = post_action(console, keys, sale.replace(":", "%3A"), "cancel", reason="test_order")
    assert response.status_code == 303
    with db.read() as conn:
        rows = dict(conn.execute(text("SELECT order_id, status FROM verification_sessions "
                                      "WHERE order_id IN (:o, :s)"), {"o": order_id, "s": sale}).all())
    assert rows == {order_id: "pending", sale: "cancelled"}


def test_an_order_id_with_a_slash_opens_and_takes_actions(console, keys, db, settings):
    order_id = f"SO/{uuid.uuid4().hex[:8]}/001"  # a store's own id; the intake takes it as it is
    place(db, settings, order_id)
    listed = console.get("/sessions", query_string={"q": order_id}, headers=as_alice(keys))
    link = re.search(r'<a href="(/orders/[^"]+)">', listed.get_data(as_text=True)).group(1)
    page = console.get(link, headers=as_alice(keys))
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    form = re.search(r'action="([^"]+/actions/cancel)"', html).group(1)
    response = console.post(form, headers=as_alice(keys), data={"csrf": csrf_of(html), "reason": "customer_request"})
    assert response.status_code == 303 and "outcome=accepted" in response.headers["Location"]
    assert console.get(response.headers["Location"], headers=as_alice(keys)).status_code == 200
    with db.read() as conn:
        assert conn.execute(text("SELECT status FROM verification_sessions WHERE order_id = :o"),
                            {"o": order_id}).scalar() == "cancelled"


@pytest.mark.parametrize("duration", ["9999999999d", "3000000d", "1" * 5000 + "h"])
def test_an_extension_past_any_calendar_is_a_bad_request(console, keys, db, settings, order_id, duration):
    place(db, settings, order_id)
    response = post_action(console, keys, order_id, "extend", duration=duration)
    assert response.status_code == 400 and "duration" in response.get_data(as_text=True)
    assert "verification.deadline_extended" not in [e[0] for e in events_of(db, order_id)]


def test_an_extension_past_what_cloud_tasks_schedules_is_refused_and_720h_taken(console, keys, db, settings,
                                                                                order_id):
    """Cloud Tasks refuses a task more than 720 h ahead: such a deadline's timer could only be
    parked. The refusal says why; 720 h itself is taken."""
    place(db, settings, order_id)
    response = post_action(console, keys, order_id, "extend", duration="31d")
    assert response.status_code == 400 and "720h" in response.get_data(as_text=True)
    assert "verification.deadline_extended" not in [e[0] for e in events_of(db, order_id)]
    response = post_action(console, keys, order_id, "extend", duration="720h")
    assert response.status_code == 303 and "outcome=accepted" in response.headers["Location"]


@pytest.mark.parametrize("number", ["²", "1" * 5000])  # str.isdigit, yet int() refuses them
def test_digits_that_int_cannot_read_are_a_bad_request(console, keys, db, settings, order_id, number):
    place(db, settings, order_id)
    assert console.get("/sessions", query_string={"due": number}, headers=as_alice(keys)).status_code == 400
    token = csrf.issue(SECRET, ALICE)
    assert console.post("/outbox/retry", headers=as_alice(keys),
                        data={"csrf": token, "outbox_id": number, "order_id": order_id}).status_code == 400
    assert console.post(f"/orders/{order_id}/actions/cancel", headers=as_alice(keys),
                        data={"csrf": f"{number}.{token.partition('.')[2]}"}).status_code == 403
    assert console.post(f"/orders/{order_id}/actions/cancel", headers=as_alice(keys),
                        data={"csrf": f"{token.partition('.')[0]}.é"}).status_code == 403  # compare_digest: ASCII
    assert [e[0] for e in events_of(db, order_id)] == ["order.received", "verification.requested"]


@pytest.mark.parametrize("position", [["0001-01-01T00:00:00+14:00", "x"], ["9999-12-31T23:59:59-14:00", "x"]])
def test_a_page_cursor_past_the_calendar_is_a_bad_request(console, keys, position):
    cursor = base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")
    response = console.get("/sessions", query_string={"after": cursor}, headers=as_alice(keys))
    assert response.status_code == 400 and "first page" in response.get_data(as_text=True)


def test_an_order_that_opened_no_session_shows_what_was_recorded(console, keys, db, settings, order_id):
    """A stale order, a sale without a customer email: no session, events "for the operator"."""
    from shared.domain.messages import IgnoredDelivery

    old = datetime.now(timezone.utc) - timedelta(days=30)
    stale = OrderPlaced("orders", f"evt-{order_id}", order_id, "late@example.com", ordered_at=old)
    assert intake.place_order(db, settings, stale, now=datetime.now(timezone.utc)).status == "ignored"
    sale = IgnoredDelivery("lightspeed", f"sale-{order_id}", f"lightspeed:{order_id}-2", reason="no_customer_email")
    assert intake.record_ignored(db, settings, sale, now=datetime.now(timezone.utc)).status == "ignored"
    response = console.get(f"/orders/{order_id}", headers=as_alice(keys))
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "no verification session" in html and "order.stale" in html
    html = console.get(f"/orders/{order_id}-2", headers=as_alice(keys)).get_data(as_text=True)  # the bare sale id
    assert "order.ignored" in html and "no_customer_email" in html and "lightspeed:" in html
    assert console.get(f"/orders/{order_id}-3", headers=as_alice(keys)).status_code == 404


def test_an_erased_customer_is_said_so_not_none(console, keys, db, settings, order_id):
    place(db, settings, order_id)
    with db.transaction() as conn:
        conn.execute(text("UPDATE verification_sessions SET status = 'cancelled', customer_email = NULL, "
                          "customer_id = NULL, erased_at = now() WHERE order_id = :o"), {"o": order_id})
    for path in (f"/orders/{order_id}", f"/sessions?q={order_id}"):
        html = console.get(path, headers=as_alice(keys)).get_data(as_text=True)
        assert "None" not in html and "erased" in html, path


def test_a_double_click_on_resend_link_sends_one_new_link(console, keys, db, settings, order_id):
    place(db, settings, order_id)
    first, second = (post_action(console, keys, order_id, "resend-link") for _ in range(2))
    assert "outcome=accepted" in first.headers["Location"] and "outcome=ignored" in second.headers["Location"]
    with db.read() as conn:
        links = conn.execute(text(
            "SELECT payload->'attributes'->>'message_key' FROM outbox WHERE order_id = :o "
            "AND payload->>'topic' = 'customer-emails' ORDER BY id"), {"o": order_id}).scalars().all()
    assert links == [f"{order_id}:link:0", f"{order_id}:link:1"]
    assert [e[0] for e in events_of(db, order_id)].count("verification.link_resent") == 1


def test_an_email_search_by_get_is_refused_and_no_log_line_names_it(console, keys, db, settings, order_id,
                                                                     captured_logs):
    email = f"searched-{uuid.uuid4().hex[:6]}@example.com"
    place(db, settings, order_id, email)
    by_get = console.get(f"/sessions?{urlencode({'q': email})}", headers=as_alice(keys))
    assert by_get.status_code == 400 and order_id not in by_get.get_data(as_text=True)
    token = csrf_of(console.get("/sessions", headers=as_alice(keys)).get_data(as_text=True))
    by_post = console.post("/sessions", headers=as_alice(keys), data={"csrf": token, "q": email})
    assert by_post.status_code == 200 and order_id in by_post.get_data(as_text=True)
    assert console.get(f"/sessions?{urlencode({'q': order_id})}", headers=as_alice(keys)).status_code == 200
    assert console.get(f"/orders/{email}", headers=as_alice(keys)).status_code == 404
    assert email not in captured_logs.getvalue()


# ---- the audit trail of reads (issue 24) -------------------------------------------


def reads_of(db, *, order_id: str | None = None, email_key: str | None = None) -> list[tuple]:
    with db.read() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT actor, action, order_id, email_key, detail FROM read_audit "
            "WHERE order_id = :o OR email_key = :e ORDER BY id"), {"o": order_id, "e": email_key})]


def test_opening_an_order_page_records_one_read_with_the_operator_and_the_order(console, keys, db, settings,
                                                                                order_id):
    place(db, settings, order_id)
    assert reads_of(db, order_id=order_id) == []
    assert console.get(f"/orders/{order_id}", headers=as_alice(keys)).status_code == 200
    assert reads_of(db, order_id=order_id) == [("operator:alice@example.com", "view_order", order_id, None, "")]
    # A page that shows nothing (an unknown order) records nothing.
    assert console.get(f"/orders/nothing-{order_id}", headers=as_alice(keys)).status_code == 404
    assert reads_of(db, order_id=f"nothing-{order_id}") == []


def test_an_email_search_records_the_keyed_hash_never_the_email(console, keys, db, settings, order_id):
    from shared.domain.customers import email_key
    from tests.conftest import CUSTOMER_KEY_SECRET

    email = f"Looked.Up-{uuid.uuid4().hex[:6]}@Example.com"
    place(db, settings, order_id, email)
    assert search(console, keys, q=email.upper(), status="pending").status_code == 200
    keyed = email_key(CUSTOMER_KEY_SECRET.encode(), email)  # the hash verify once and forget use, any case
    assert reads_of(db, email_key=keyed) == [("operator:alice@example.com", "search", None, keyed,
                                              "by email, status=pending")]
    with db.read() as conn:
        dumped = " ".join(conn.execute(text("SELECT read_audit::text FROM read_audit")).scalars())
    assert email.lower() not in dumped.lower() and email.split("@")[0].lower() not in dumped.lower()
    # An order id searched for, and a plain list, are recorded too.
    assert search(console, keys, q=order_id).status_code == 200
    assert reads_of(db, order_id=order_id)[-1][:3] == ("operator:alice@example.com", "search", order_id)
    assert console.get("/sessions?attention=1", headers=as_alice(keys)).status_code == 200
    with db.read() as conn:
        last = conn.execute(text("SELECT actor, action, order_id, email_key, detail FROM read_audit "
                                 "ORDER BY id DESC LIMIT 1")).one()
    assert tuple(last) == ("operator:alice@example.com", "list_sessions", None, None, "attention")


def test_a_viewers_reads_are_recorded_too(listed_console, keys, db, settings, order_id):
    place(db, settings, order_id)
    victor = as_alice(keys, "victor@example.com")
    assert listed_console.get(f"/orders/{order_id}", headers=victor).status_code == 200
    assert reads_of(db, order_id=order_id) == [("operator:victor@example.com", "view_order", order_id, None, "")]
    # ... and a viewer may read the audit trail (an auditor is a viewer).
    page = listed_console.get(f"/audit?order={order_id}", headers=victor)
    assert page.status_code == 200 and "operator:victor@example.com" in page.get_data(as_text=True)


def test_a_read_the_trail_cannot_record_is_not_served(console, keys, db, settings, order_id, monkeypatch):
    from shared.db import audit_store
    from shared.errors import TransientError

    email = f"unrecorded-{uuid.uuid4().hex[:6]}@example.com"
    place(db, settings, order_id, email)

    def down(conn, entry):
        raise TransientError("database unavailable", component="database")

    monkeypatch.setattr(audit_store, "record", down)
    for response in (console.get(f"/orders/{order_id}", headers=as_alice(keys)), search(console, keys, q=email)):
        assert response.status_code == 503
        body = response.get_data(as_text=True)
        assert email not in body and order_id not in body


def test_the_audit_page_lists_reads_by_order_and_by_email(console, keys, db, settings, order_id, captured_logs):
    email = f"audited-{uuid.uuid4().hex[:6]}@example.com"
    place(db, settings, order_id, email)
    console.get(f"/orders/{order_id}", headers=as_alice(keys, "bob@example.com"))
    search(console, keys, q=email)
    by_order = console.get(f"/audit?order={order_id}", headers=as_alice(keys)).get_data(as_text=True)
    rows = re.findall(r'<tr class="entry">(.*?)</tr>', by_order, re.S)
    assert len(rows) == 1 and "operator:bob@example.com" in rows[0] and "view_order" in rows[0]
    by_email = console.post("/audit", headers=as_alice(keys),
                            data={"csrf": csrf.issue(SECRET, ALICE), "email": email.upper()})
    assert by_email.status_code == 200
    rows = re.findall(r'<tr class="entry">(.*?)</tr>', by_email.get_data(as_text=True), re.S)
    assert len(rows) == 1 and "operator:alice@example.com" in rows[0] and "search" in rows[0]
    # Looking is recorded (as the hash again), the email goes in no URL, no log line, no row.
    assert console.get(f"/audit?{urlencode({'email': email})}", headers=as_alice(keys)).status_code == 400
    assert console.post("/audit", headers=as_alice(keys), data={"csrf": csrf.issue(SECRET, ALICE),
                                                                "email": "not-an-email"}).status_code == 400
    with db.read() as conn:
        actions = conn.execute(text("SELECT action FROM read_audit WHERE actor = 'operator:alice@example.com' "
                                    "ORDER BY id DESC LIMIT 2")).scalars().all()
        dumped = " ".join(conn.execute(text("SELECT read_audit::text FROM read_audit")).scalars())
    assert actions == ["view_audit", "view_audit"] and email not in dumped
    assert email not in captured_logs.getvalue()


def test_retention_deletes_reads_older_than_retention(app_env, db, settings):
    from shared.handlers import retention

    now = datetime.now(timezone.utc)
    tag = uuid.uuid4().hex[:8]
    with db.transaction() as conn:
        for name, age in (("old", settings.retention.sessions + timedelta(days=1)),
                          ("kept", settings.retention.sessions - timedelta(days=1))):
            conn.execute(text("INSERT INTO read_audit (at, actor, action, order_id) "
                              "VALUES (:at, 'operator:alice@example.com', 'view_order', :o)"),
                         {"at": now - age, "o": f"{name}-{tag}"})
    assert retention.preview(db, settings, now=now)["read audit entries"] >= 1  # purge --dry-run counts them
    assert retention.purge(db, settings, now=now).get("read audit entries", 0) >= 1
    assert reads_of(db, order_id=f"old-{tag}") == [] and len(reads_of(db, order_id=f"kept-{tag}")) == 1
