"""Email templates and their renderer: every kind, escaping, the store's time zone."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from shared.domain.model import Email
from shared.emails import KIND_HEADER, build_message, format_deadline, render

DEADLINE = datetime(2026, 12, 3, 13, 0, tzinfo=timezone.utc)
URL = "https://verify.example.test/v/abc123"
HOSTILE = "<script>alert(1)</script>"


def _render(kind, **overrides):
    arguments = dict(
        order_id="A-1001",
        verification_url=URL,
        deadline=DEADLINE,
        store_timezone="Europe/Berlin",
    )
    arguments.update(overrides)
    return render(kind, **arguments)


@pytest.mark.parametrize("kind", list(Email))
def test_every_kind_renders_subject_text_and_html(kind):
    subject, text, html = _render(kind)

    assert subject and "\n" not in subject
    assert "A-1001" in subject
    assert "A-1001" in text
    assert "<strong>A-1001</strong>" in html
    assert html.startswith("<!DOCTYPE html>")
    assert "<title>" + subject + "</title>" in html
    # Every placeholder was filled (a `$name` left over means a typo in a template).
    for part in (subject, text, html):
        assert not re.search(r"\$\w", part)


@pytest.mark.parametrize("kind", [Email.LINK, Email.REMINDER])
def test_link_and_reminder_carry_the_link_and_the_local_deadline(kind):
    subject, text, html = _render(kind)

    assert URL in text
    assert f'href="{URL}"' in html
    assert "Thursday 3 December 2026, 14:00 CET" in text
    assert "Thursday 3 December 2026, 14:00 CET" in html


def test_reminder_counts_from_one():
    _, text, html = _render(Email.REMINDER, reminder_index=1)

    assert "reminder 2" in text
    assert "reminder 2" in html


@pytest.mark.parametrize("kind", [Email.EXPIRED, Email.DECLINED])
def test_expired_and_declined_tell_the_customer_about_the_refund(kind):
    subject, text, html = _render(kind, verification_url=None)

    assert "refund" in text.lower()
    assert "refund" in html.lower()
    assert "cancelled" in text


def test_expired_email_carries_the_refund_notice_and_the_deadline():
    subject, text, html = _render(Email.EXPIRED, verification_url=None)

    assert "refunded" in subject
    assert "Refund notice" in text
    assert "<strong>Refund notice:</strong>" in html
    assert "Thursday 3 December 2026, 14:00 CET" in text


def test_verified_email_does_not_mention_a_refund():
    _, text, html = _render(Email.VERIFIED, verification_url=None)

    assert "refund" not in text.lower()
    assert "refund" not in html.lower()


@pytest.mark.parametrize("store_told, promise", [(True, "will be prepared for shipping"),
                                                  (False, "will let you know about the next steps")])
def test_the_returning_email_says_no_action_is_needed_without_a_link(store_told, promise):
    subject, text, html = _render(Email.RETURNING, verification_url=None, store_told=store_told)

    assert subject.startswith("No action needed") and "no action is needed" in text.lower()
    for part in (text, html):
        assert "http" not in part and "verify it again" in part
        assert promise in part and "refund" not in part.lower()
        if not store_told:
            assert "shipping" not in part  # nothing is promised the store was not told


@pytest.mark.parametrize("kind", list(Email))
def test_every_interpolated_value_is_escaped_in_html_and_verbatim_in_text(kind):
    url = 'https://verify.example.test/v/x?a=1&b="><img src=x onerror=alert(2)>'
    store = "<b>Shop</b> & 'Co'"

    subject, text, html = _render(kind, order_id=HOSTILE, verification_url=url, store_name=store)

    assert "<script" not in html
    assert "<img" not in html
    assert "<b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;b&gt;Shop&lt;/b&gt; &amp; &#x27;Co&#x27;" in html
    assert HOSTILE in text
    assert HOSTILE in subject
    if kind in (Email.LINK, Email.REMINDER):
        assert 'href="https://verify.example.test/v/x?a=1&amp;b=&quot;&gt;&lt;img' in html
        assert url in text
    assert store in text


def test_subject_never_holds_a_line_break():
    subject, _, _ = _render(Email.LINK, order_id="A-1\r\nBcc: victim@example.test")

    assert "\r" not in subject and "\n" not in subject
    assert subject.endswith("A-1 Bcc: victim@example.test")


@pytest.mark.parametrize(
    "url", [None, "", "javascript:alert(1)", "data:text/html,hi", "/relative/path", "https:///no-host"]
)
def test_link_needs_an_absolute_http_url(url):
    with pytest.raises(ValueError):
        _render(Email.LINK, verification_url=url)


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError):
        _render("welcome")


@pytest.mark.parametrize(
    ("deadline", "zone", "expected"),
    [
        (DEADLINE, "Europe/Berlin", "Thursday 3 December 2026, 14:00 CET"),
        (datetime(2026, 7, 1, 12, 0, tzinfo=timezone.utc), "Europe/Berlin", "Wednesday 1 July 2026, 14:00 CEST"),
        (DEADLINE, "UTC", "Thursday 3 December 2026, 13:00 UTC"),
        # Crosses midnight backwards: the local date is the day before.
        (datetime(2026, 12, 3, 2, 30, tzinfo=timezone.utc), "America/New_York", "Wednesday 2 December 2026, 21:30 EST"),
        # A zone without a letter abbreviation shows its offset.
        (DEADLINE, "America/Sao_Paulo", "Thursday 3 December 2026, 10:00 UTC-03"),
        # A non-UTC aware input is converted, not re-labelled.
        (datetime(2026, 12, 3, 8, 0, tzinfo=timezone(timedelta(hours=-5))), "Europe/Berlin",
         "Thursday 3 December 2026, 14:00 CET"),
    ],
)
def test_deadline_is_shown_in_the_store_time_zone(deadline, zone, expected):
    assert format_deadline(deadline, zone) == expected


def test_naive_deadline_is_refused():
    with pytest.raises(ValueError):
        format_deadline(datetime(2026, 12, 3, 13, 0), "Europe/Berlin")


def test_build_message_addresses_the_customer_and_labels_the_kind():
    message = build_message(
        "customer@example.test",
        Email.REMINDER,
        order_id="A-1001",
        verification_url=URL,
        deadline=DEADLINE,
        store_timezone="Europe/Berlin",
        store_name="Cellar & Co",
    )

    assert message.to == "customer@example.test"
    assert message.headers == {KIND_HEADER: "reminder"}
    assert message.subject == "Reminder: verify your age for order A-1001"
    assert "Cellar & Co" in message.text
    assert "Cellar &amp; Co" in message.html
