"""The console in a real browser: filter, open an order, extend it, close a manual refund, see the funnel."""

from __future__ import annotations

import uuid

from playwright.sync_api import expect
from sqlalchemy import text

from tests.browser.conftest import DEV_TOKEN, screenshot
from tests.functions.test_operator_console import expire_with_manual_refund, place


def funnel_count(page, base: str, metric: str) -> int:
    page.goto(f"{base}/funnel?range=today")
    cell = page.locator(f"td.metric-{metric}")
    return int(cell.inner_text()) if cell.count() else 0


def wait_for_funnel(page, base: str, metric: str, expected: int) -> int:
    """Messages reach analytics asynchronously (as with Pub/Sub): reload until counted, or give up."""
    for _ in range(100):
        count = funnel_count(page, base, metric)
        if count >= expected:
            return count
        page.wait_for_timeout(200)
    return count


def test_filter_open_extend_and_see_the_timeline(stack, console_page, db, settings):
    page, tag = console_page, uuid.uuid4().hex[:8]
    email = f"browser-{tag}@example.com"
    pending, other = f"web-{tag}-a", f"web-{tag}-b"
    place(db, settings, pending, email)
    place(db, settings, other, email)
    with db.transaction() as conn:
        conn.execute(text("UPDATE verification_sessions SET status = 'in_review' WHERE order_id = :o"), {"o": other})

    # Signed in by the printed URL: a cookie scripts cannot read, sent to this site's own pages only,
    # holding no token.
    [cookie] = page.context.cookies()
    assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (
        "console_dev", True, "Strict", "/")
    assert DEV_TOKEN not in cookie["value"] and DEV_TOKEN not in page.content()
    page.goto(f"{stack}/sessions")
    expect(page.locator("h1")).to_have_text("Sessions")
    page.fill("input[name=q]", email)
    page.select_option("select[name=status]", "pending")
    page.click("button:has-text('Filter')")
    expect(page.locator("table.list tbody tr")).to_have_count(1)
    expect(page.locator("table.list")).to_contain_text(pending)
    assert "q=" not in page.url and "?" not in page.url  # the search was POSTed: no URL records the email
    screenshot(page, "sessions-filtered")

    page.click(f"a:has-text('{pending}')")
    expect(page.locator("h1")).to_contain_text(pending)
    expect(page.locator("table.timeline")).not_to_contain_text("verification.deadline_extended")
    page.fill("input[name=duration]", "120h")
    page.click("button:has-text('Extend deadline')")
    expect(page.locator(".notice")).to_have_text("extend: accepted")
    expect(page.locator("table.timeline")).to_contain_text("verification.deadline_extended")
    expect(page.locator("table.timeline")).to_contain_text("operator:dev@localhost")
    expect(page.locator(".countdown")).to_contain_text("in 4 d")
    screenshot(page, "order-extended")


def test_mark_a_manual_refund_done_and_the_funnel_counts_it(stack, console_page, db, settings, order_id):
    page = console_page
    expire_with_manual_refund(db, settings, order_id)
    before = funnel_count(page, stack, "refunds_completed")

    page.goto(f"{stack}/sessions?q={order_id}")
    page.click(f"a:has-text('{order_id}')")
    expect(page.locator("dd.refund")).to_have_text("manual")
    page.select_option("form[action$='refund-done'] select[name=reason]", "refunded_at_till")
    page.fill("form[action$='refund-done'] textarea[name=note]", "till 2, receipt 881")
    page.click("button:has-text('Refund done')")
    expect(page.locator(".notice")).to_have_text("refund-done: accepted")
    expect(page.locator("dd.refund")).to_have_text("refunded")
    expect(page.locator("table.timeline")).to_contain_text("refund.completed")
    expect(page.locator("table.timeline")).to_contain_text("reason=refunded_at_till")
    expect(page.locator(".operator-note")).to_contain_text("till 2, receipt 881")  # staff see the note

    assert wait_for_funnel(page, stack, "refunds_completed", before + 1) == before + 1
    expect(page.locator("svg.chart")).to_be_visible()
    screenshot(page, "funnel")


def test_play_a_lifecycle_through_the_local_provider_page(stack, browser_page, db, settings, order_id):
    from tests.functions.conftest import client_for
    from tests.functions.test_webhook_intake import post_order

    page = browser_page
    assert post_order(client_for("webhook_intake"), order_id).status_code == 200
    link = None
    for _ in range(100):  # the link email is queued, then pushed to its subscriber, which opens the session
        with db.read() as conn:
            link = conn.execute(text("SELECT provider_url FROM verification_sessions WHERE order_id = :o"),
                                {"o": order_id}).scalar()
        if link:
            break
        page.wait_for_timeout(200)
    assert link and link.startswith(f"{stack}/verify/")

    page.goto(link)
    expect(page.locator("h1")).to_contain_text("Verify your age")
    page.check("input[value=approved]")
    page.fill("input[name=dob]", "1990-05-17")
    screenshot(page, "provider-page")
    page.click("button:has-text('Send the decision')")
    expect(page.locator(".notice")).to_contain_text("answered 200 accepted")
    # The customer's browser is not signed in to the console: its link asks for the printed URL.
    page.click("a:has-text('See the order in the console')")
    expect(page.locator("body")).to_contain_text("Open the console URL the local stack printed")
    expect(page.locator("body")).not_to_contain_text(order_id)
    page.goto(f"{page.url}?dev_token={DEV_TOKEN}")
    assert page.url == f"{stack}/orders/{order_id}"
    expect(page.locator("h1 .status")).to_have_text("verified")
    expect(page.locator("table.timeline")).to_contain_text("verification.approved")
    expect(page.locator("table.timeline")).to_contain_text("customer.email_sent")


def test_the_system_page_shows_a_parked_row_and_leads_to_it(stack, console_page, db):
    """A row parked by the relay and a store action the store refused are counted on /system
    (reached from the nav), and the parked count leads to the orders needing attention."""
    from datetime import datetime, timezone

    from shared.adapters.tasks import LocalTaskScheduler
    from shared.db import health, outbox
    from shared.domain.rows import OutboxKind, OutboxRow
    from shared.handlers import relay
    from tests.integration.test_timers_and_relay import RecordingPublisher

    order_id = f"parked-{uuid.uuid4().hex[:8]}"
    refused = f"woocommerce:9{uuid.uuid4().int % 10**9}"
    with db.transaction() as conn:
        outbox.write_effects(conn, [], [OutboxRow(OutboxKind.TASK_CREATE, order_id, {
            "name": "not a valid task name!", "schedule_time": datetime.now(timezone.utc).isoformat(),
            "body": {"v": 1}})])
        conn.execute(text("INSERT INTO store_actions (order_id, action, connector, requested_at, state, error_code, "
                          "finished_at) VALUES (:o, 'cancel_and_refund', 'woocommerce', now(), 'failed', "
                          "'order_status_completed', now())"), {"o": refused})
    try:
        assert relay.relay(db, LocalTaskScheduler(db, "http://127.0.0.1:9/"), RecordingPublisher(),
                           order_ids=[order_id]).dead == 1
        with db.read() as conn:
            numbers = health.report(conn, local_queue=True)
        parked, refusals = numbers.outbox.parked, numbers.store_actions_failed["woocommerce"]
        assert parked >= 1 and refusals >= 1

        page = console_page
        page.goto(f"{stack}/sessions")
        page.get_by_role("link", name="System").click()
        expect(page.locator("h1")).to_have_text("System")
        expect(page.locator("dd.outbox-parked")).to_have_text(str(parked))
        expect(page.locator("td.failed-woocommerce")).to_have_text(str(refusals))
        screenshot(page, "console-system")
        page.locator("dd.outbox-parked a").click()
        expect(page).to_have_url(f"{stack}/sessions?attention=1")
    finally:
        with db.transaction() as conn:
            conn.execute(text("DELETE FROM outbox WHERE order_id = :o"), {"o": order_id})
            conn.execute(text("DELETE FROM store_actions WHERE order_id = :o"), {"o": refused})


def test_the_audit_page_shows_who_opened_and_who_searched(stack, console_page, db, settings):
    """Open an order and search its customer's email, then find both reads on /audit (from the
    nav): by the order id, and by the email (posted, hashed as the search was recorded)."""
    page, tag = console_page, uuid.uuid4().hex[:8]
    email, order_id = f"audited-{tag}@example.com", f"audit-{tag}"
    place(db, settings, order_id, email)
    page.goto(f"{stack}/orders/{order_id}")
    expect(page.locator("h1")).to_contain_text(order_id)
    page.goto(f"{stack}/sessions")
    page.fill("input[name=q]", email)
    page.click("button:has-text('Filter')")
    expect(page.locator("table.list")).to_contain_text(order_id)

    page.get_by_role("link", name="Audit", exact=True).click()
    expect(page.locator("h1")).to_have_text("Audit of reads")
    page.fill("form.audit-by-order input[name=order]", order_id)
    page.click("form.audit-by-order button")
    expect(page.locator("table.audit tr.entry")).to_have_count(1)
    expect(page.locator("table.audit tr.entry td.actor")).to_have_text("operator:dev@localhost")
    expect(page.locator("table.audit tr.entry td.action")).to_have_text("view_order")

    page.fill("form.audit-by-email input[name=email]", email.upper())
    page.click("form.audit-by-email button")
    expect(page.locator("table.audit tr.entry")).to_have_count(1)
    expect(page.locator("table.audit tr.entry td.action")).to_have_text("search")
    expect(page.locator("table.audit")).not_to_contain_text(email)
    assert email not in page.url
    screenshot(page, "audit-by-email")
