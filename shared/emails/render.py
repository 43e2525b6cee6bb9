"""Render customer emails from the template files in `templates/`.

A kind's subject is in its spec (`shared.domain.model.EMAILS`); its body is two files,
`{template}.txt` (plain text) and `{template}.html` (a fragment placed inside
`_layout.html`). Subjects and templates use `string.Template` placeholders:

    $order_id  $store_name  $verification_url  $deadline  $reminder_number  $shipping

`$shipping` (the kinds whose spec `tells_shipping`: verified, returning) promises shipping only
when the store was told to release the order (`store_told`: its store connector was asked to);
otherwise it promises nothing.

Every value is HTML-escaped before it is put into the HTML part; the text part
and the subject get the raw value (they are not HTML). The deadline is shown in
the store's time zone, e.g. "Thursday 3 December 2026, 14:00 CET".
"""

from __future__ import annotations

import functools
import html
import re
from datetime import datetime, tzinfo
from importlib import resources
from string import Template
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from shared.ports import KIND_HEADER, EmailMessage
from shared.domain.model import Email, email_spec

DEFAULT_STORE_NAME = "our store"


# English names by hand: strftime's %A/%B follow the process locale.
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)
_WHITESPACE = re.compile(r"\s+")


def format_deadline(deadline: datetime, store_timezone: str | tzinfo) -> str:
    """The deadline as a customer reads it, in the store's zone: `Thursday 3 December 2026, 14:00 CET`.

    `deadline` must be timezone-aware (the service keeps UTC everywhere); a
    naive value would be silently read as server-local time, so it is refused.
    """
    if deadline.tzinfo is None or deadline.utcoffset() is None:
        raise ValueError("deadline must be timezone-aware")
    zone = ZoneInfo(store_timezone) if isinstance(store_timezone, str) else store_timezone
    local = deadline.astimezone(zone)
    abbreviation = local.tzname() or ""
    # Some zones have no letters abbreviation (tzdata gives "-03"): say it is an offset.
    if abbreviation[:1] in ("+", "-"):
        abbreviation = f"UTC{abbreviation}"
    return (
        f"{_DAYS[local.weekday()]} {local.day} {_MONTHS[local.month - 1]} {local.year}, "
        f"{local:%H:%M} {abbreviation}"
    ).rstrip()


def render(
    kind: Email | str,
    *,
    order_id: str,
    verification_url: str | None,
    deadline: datetime,
    store_timezone: str | tzinfo,
    reminder_index: int = 0,
    store_name: str = DEFAULT_STORE_NAME,
    store_told: bool = False,
) -> tuple[str, str, str]:
    """Render one email: `(subject, text, html)`.

    `kind` is a kind in `EMAILS` (link, reminder, verified, declined, expired, returning).
    `verification_url` is required for a kind that needs a link and must be
    http(s); it may be None for the others. `reminder_index` is 0-based (shown as
    "reminder 1"). Raises ValueError for an unknown kind or a bad argument.
    """
    spec = email_spec(kind)
    if spec.needs_link:
        _check_url(verification_url)
    if reminder_index < 0:
        raise ValueError("reminder_index must be 0 or more")
    values = {
        "order_id": order_id,
        "store_name": store_name,
        "verification_url": verification_url or "",
        "deadline": format_deadline(deadline, store_timezone),
        "reminder_number": str(reminder_index + 1),
        "shipping": ("is cleared and will be prepared for shipping." if store_told
                     else f"is cleared. {store_name} will let you know about the next steps."),
    }
    # A header cannot hold a line break; collapse any whitespace run a value brings in.
    subject = _WHITESPACE.sub(" ", Template(spec.subject).substitute(values)).strip()
    text = _template(f"{spec.template}.txt").substitute(values)
    escaped = {name: html.escape(value, quote=True) for name, value in values.items()}
    fragment = _template(f"{spec.template}.html").substitute(escaped)
    # `content` is the only value not escaped here: it is our own fragment,
    # whose interpolated values were escaped on the line above.
    page = _template("_layout.html").substitute(
        escaped, subject=html.escape(subject, quote=True), content=fragment
    )
    return subject, text, page


def build_message(to: str, kind: Email | str, *, repeat_key: str | None = None, **render_args: Any) -> EmailMessage:
    """Render `kind` (with `render`'s arguments) into the port's EmailMessage addressed to `to`
    (`repeat_key`: see EmailMessage).

    The message carries the kind in the `X-Verification-Email` header, so a
    sender can log which email it sent without touching address or body.
    """
    subject, text, page = render(kind, **render_args)
    return EmailMessage(to=to, subject=subject, text=text, html=page, headers={KIND_HEADER: str(kind)},
                        repeat_key=repeat_key)


def _check_url(url: str | None) -> None:
    # The URL lands in an href: escaping stops attribute break-outs, but only a
    # scheme check stops `javascript:` and friends.
    if not url:
        raise ValueError("verification_url is required for this email kind")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise ValueError("verification_url must be an absolute http(s) URL")


# importlib.resources finds the files wherever the package is installed or zipped.
TEMPLATES = resources.files("shared.emails").joinpath("templates")


@functools.cache
def _template(name: str) -> Template:
    return Template(TEMPLATES.joinpath(name).read_text(encoding="utf-8"))
