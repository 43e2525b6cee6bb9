"""The console's request handling: who is asking, which page, which action; HTML out.

Every response carries the security headers; every POST carries a CSRF token tied to
the operator; log lines carry order ids and the operator, never a customer's email. Every page
that shows customer data (an order, a list, a search) records the read in the audit trail
(`shared.db.audit_store`) before it answers; if it cannot, it does not answer (503).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote, urlencode

import flask
import jinja2
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule

from shared import bootstrap
from shared.config import ConsoleAuth, Settings
from shared.console import actions, auth, csrf, provider_page, report
from shared.db import audit_store, reads
from shared.domain import audit, fields, keys, reasons
from shared.domain.audit import ReadAction, ReadEntry
from shared.domain.model import Status
from shared.errors import ConfigError, PermanentError, TransientError

log = logging.getLogger("shared.console")

HERE = Path(__file__).parent
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                                "frame-ancestors 'none'; base-uri 'none'"),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
}
PAGE_SIZE = 50
# A number in a form or query: ASCII digits, few enough for int() and a bigint (str.isdigit
# takes "²", and int() refuses it or 5000 digits).
_NUMBER = re.compile(r"[0-9]{1,18}")

URLS = Map([
    Rule("/", endpoint="home", methods=["GET"]),
    Rule("/sessions", endpoint="sessions", methods=["GET", "POST"]),
    # `path`: a store's own order id may hold a slash (`SO/2026/001`); links quote it as %2F,
    # which reaches the routing decoded.
    Rule("/orders/<path:order_id>/actions/<action>", endpoint="action", methods=["POST"]),
    Rule("/orders/<path:order_id>", endpoint="order", methods=["GET"]),
    Rule("/outbox/retry", endpoint="retry", methods=["POST"]),
    Rule("/funnel", endpoint="funnel", methods=["GET"]),
    Rule("/system", endpoint="system", methods=["GET"]),
    Rule("/forget", endpoint="forget", methods=["GET", "POST"]),
    Rule("/audit", endpoint="audit_trail", methods=["GET", "POST"]),
    Rule("/assets/console.css", endpoint="css", methods=["GET"]),
    Rule("/verify/<session_id>", endpoint="provider", methods=["GET", "POST"]),
    Rule("/healthz", endpoint="healthz", methods=["GET"]),
], strict_slashes=False)


def _when(value: datetime | None) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


def _countdown(deadline: datetime, now: datetime) -> str:
    seconds = int((deadline - now).total_seconds())
    hours, rest = divmod(abs(seconds), 3600)
    text = f"{hours // 24} d {hours % 24} h" if hours >= 24 else f"{hours} h {rest // 60} min"
    return f"in {text}" if seconds >= 0 else f"overdue by {text}"


# What a person reads for a store action's state (held, released, cancelled and refunded, ...).
_STORE_DONE = {"hold": "held", "release": "released", "cancel_and_refund": "cancelled and refunded",
               "flag_for_review": "flagged", "note_cancelled": "told"}


def _store_state(action: dict) -> str:
    if action["state"] == "done":
        return "told" if action["connector"] == "outcome_webhook" else _STORE_DONE.get(action["action"], "done")
    if action["state"] == "leased":
        return "in flight, or waiting to retry"
    return {"due": "asked", "failed": "failed", "skipped": "skipped"}.get(action["state"], action["state"])


_templates = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                                autoescape=True, undefined=jinja2.StrictUndefined)
_templates.filters["when"] = _when
_templates.filters["segment"] = lambda value: quote(str(value), safe="")  # one path segment: "/" quoted too


@dataclass
class Page:
    """One request's context: settings, operator, CSRF token, current time."""

    settings: Settings
    operator: str
    token: str
    now: datetime
    secret: str = field(repr=False)  # CONSOLE_SECRET: CSRF tokens and outcome notices

    @property
    def actor(self) -> str:
        """Who the audit trail of reads names: `operator:<IAP-verified email>`, as the event log."""
        from shared.handlers.transitions import operator_actor

        return operator_actor(self.operator)

    @property
    def pepper(self) -> bytes | None:
        """The key of a searched email's hash in the audit trail (CUSTOMER_KEY_SECRET)."""
        return audit.pepper_of(self.settings.reuse.key_secret)

    def render(self, template: str, status: int = 200, **values) -> flask.Response:
        html = _templates.get_template(template).render(
            operator=self.operator, csrf=self.token, now=self.now, countdown=_countdown, store_state=_store_state,
            statuses=[str(s) for s in Status], **values)
        return flask.Response(html, status=status, mimetype="text/html")


def identify(request: flask.Request, settings: Settings, keys: auth.PublicKeys, *, customer_page: bool = False) -> str:
    if settings.console.auth == ConsoleAuth.DEV:
        return auth.dev_identity(request.remote_addr, request.host, request.headers,
                                 request.cookies.get(auth.DEV_COOKIE), settings.console.dev_token,
                                 customer_page=customer_page)
    return auth.verify_iap(request.headers.get(auth.IAP_HEADER), audience=settings.require("IAP_AUDIENCE"),
                           keys=keys)


def handle(request: flask.Request, settings_of: Callable[[], Settings],
           keys_of: Callable[[str], auth.PublicKeys]) -> flask.Response:
    """Authenticate, route and render one request (errors become short HTML pages)."""
    try:
        adapter = URLS.bind_to_environ(request.environ)
        endpoint, args = adapter.match()
        if endpoint == "healthz":
            return flask.Response("ok", mimetype="text/plain")
        if endpoint == "css":
            return flask.Response((HERE / "static" / "console.css").read_text(), mimetype="text/css")
        settings = settings_of()
        if (settings.console.auth == ConsoleAuth.DEV and request.method == "GET"
                and auth.DEV_TOKEN_PARAMETER in request.args):
            return _dev_sign_in(request, settings, adapter.build(endpoint, args))
        operator = identify(request, settings, keys_of(settings.console.iap_public_keys_url),
                            customer_page=endpoint == "provider")
        auth.authorize(operator, settings.console, _need(endpoint, request.method, args))
        secret = settings.require("CONSOLE_SECRET")
        if request.method == "POST":
            csrf.check(secret, operator, request.form.get("csrf"))
        page = Page(settings, operator, csrf.issue(secret, operator), datetime.now(timezone.utc), secret)
        return VIEWS[endpoint](page, request, **args)
    except HTTPException as exc:
        return _error_page(exc.code or 400, exc.description)
    except PermanentError as exc:
        log.warning("refused: %s", exc, extra={"labels": {"status": str(exc.status)}})
        return _error_page(exc.status, str(exc))
    except (TransientError, ConfigError) as exc:
        log.error("unavailable: %s", exc)
        return _error_page(503, "the console cannot reach what it needs right now; try again shortly")


def _dev_sign_in(request: flask.Request, settings: Settings, path: str) -> flask.Response:
    """`?dev_token=` (CONSOLE_AUTH=dev): the sign-in cookie, and 303 to the same page without the
    token, so it stays out of the address bar and the history."""
    cookie = auth.dev_sign_in(request.remote_addr, request.host, request.headers,
                              request.args.get(auth.DEV_TOKEN_PARAMETER, ""), settings.require("CONSOLE_DEV_TOKEN"))
    rest = [(k, v) for k, v in request.args.items(multi=True) if k != auth.DEV_TOKEN_PARAMETER]
    response = flask.redirect(path + (f"?{urlencode(rest)}" if rest else ""), code=303)
    response.set_cookie(auth.DEV_COOKIE, cookie, httponly=True, samesite="Strict", path="/")
    return response


def _need(endpoint: str, method: str, args: dict) -> str:
    """What a request needs of its operator: the filter form is POSTed but only reads."""
    if endpoint == "action":
        return auth.VERIFY if args.get("action") == "verify" else auth.ACT
    if endpoint == "retry" or (endpoint == "provider" and method == "POST"):
        return auth.ACT
    return auth.VIEW


def _error_page(status: int, message: str) -> flask.Response:
    html = _templates.get_template("error.html").render(status=status, message=message)
    return flask.Response(html, status=status, mimetype="text/html")


def secure(response: flask.Response) -> flask.Response:
    response.headers.update(SECURITY_HEADERS)
    return response


# ---- views --------------------------------------------------------------------------


def _filter_from(args) -> reads.SessionFilter:
    due = args.get("due", "").strip()
    status = args.get("status") or None
    if status and status not in {str(s) for s in Status}:
        raise actions.BadAction(f"unknown status {status!r}")
    if due and not (_NUMBER.fullmatch(due) and 0 < int(due) <= 24 * 365):
        raise actions.BadAction("due within: a whole number of hours")
    return reads.SessionFilter(status=status, due_within=timedelta(hours=int(due)) if due else None,
                               overdue=args.get("overdue") == "1", attention=args.get("attention") == "1",
                               query=args.get("q", "").strip() or None, after=args.get("after") or None,
                               limit=PAGE_SIZE)


def home(page: Page, request: flask.Request) -> flask.Response:
    return flask.redirect("/sessions", code=302)


def sessions(page: Page, request: flask.Request) -> flask.Response:
    """The list. The filter form is POSTed, so a searched customer email stays out of the URL
    (which Cloud Run, the load balancer and the browser's history record); links filter by GET."""
    source = request.form if request.method == "POST" else request.args
    if request.method == "GET" and "@" in source.get("q", ""):
        raise actions.BadAction("search for an email with the search form: it is posted, so the address "
                                "stays out of URLs and logs")
    chosen = _filter_from(source)
    read = audit.of_term(page.actor, ReadAction.SEARCH if chosen.query else ReadAction.LIST_SESSIONS,
                         chosen.query, page.pepper, chosen.described())
    try:
        with bootstrap.container().db.read() as conn:
            rows, next_cursor = reads.list_sessions(conn, chosen, page.now)
            # Orders that opened no session have no row above: listed beside it, first page only.
            unopened = (reads.sessionless_orders(conn, page.now)
                        if chosen.attention and not chosen.after and not chosen.query else [])
            audit_store.record(conn, read)
    except ValueError:
        raise actions.BadAction("that page link is not valid any more; start from the first page") from None
    query = {k: v for k, v in source.items() if k not in ("after", "csrf") and v}
    return page.render("sessions.html", rows=rows, next_cursor=next_cursor, chosen=chosen, query=query,
                       next_by_post="@" in query.get("q", ""), unopened=unopened,
                       unopened_days=reads.SESSIONLESS_SHOWN.days)


def order(page: Page, request: flask.Request, order_id: str) -> flask.Response:
    """One session by its key; a store's own id (`/orders/123` for the Lightspeed sale 123)
    leads to its session, or to the list when several sources share it. An order that opened no
    session shows what was recorded for it."""
    with bootstrap.container().db.read() as conn:
        story = reads.order_story(conn, order_id)
        if story is None:
            found = reads.matching_orders(conn, order_id)
            recorded = [] if found else reads.unopened_order_events(conn, order_id)
        else:
            found = reads.matching_orders(conn, keys.ref(order_id).order_id)
        if story is not None or (not found and recorded):  # what is shown, not a redirect or a 404
            audit_store.record(conn, ReadEntry(page.actor, ReadAction.VIEW_ORDER, order_id=order_id[:audit.TERM_MAX],
                                               detail="" if story else "no session"))
    if story is None:
        if len(found) == 1:
            return flask.redirect(f"/orders/{quote(found[0]['order_id'], safe='')}", code=302)
        if found:
            return flask.redirect(f"/sessions?{urlencode({'q': order_id})}", code=302)
        if recorded:  # a stale order, a sale without an email: no session, but recorded for the operator
            return page.render("unopened.html", order_id=order_id, events=recorded)
        raise NotFound(f"no order {order_id}")
    # Other sources' sessions for the same store order id (a Lightspeed sale 123 beside order 123).
    others = [m for m in found if m["order_id"] != order_id]
    notice = [request.args.get(k, "") for k in ("done", "outcome", "detail")]
    if not csrf.sealed(page.secret, page.operator, request.args.get("seal"), order_id, *notice):
        notice = ["", "", ""]  # not the console's own redirect: no "verify: accepted" from a crafted link
    done, outcome, detail = notice
    return page.render("order.html", story=story, s=story["session"], others=others, reasons=reasons.REASONS,
                       note_max=reasons.NOTE_MAX,
                       store_order_id=keys.ref(order_id).order_id, done=done, outcome=outcome, detail=detail)


def action(page: Page, request: flask.Request, order_id: str, action: str) -> flask.Response:
    result = actions.run(action, actions.Request(
        order_id=order_id, operator=page.operator, reason=request.form.get("reason", "").strip() or None,
        note=request.form.get("note") or None,
        duration=request.form.get("duration", "").strip() or None,
        store_action=request.form.get("store_action", "").strip() or None,
        effect=request.form.get("effect", "").strip() or None,
        age_checked=request.form.get("age_checked") == "1"))
    log.info("operator action %s: %s", action, result.status,
             extra={"labels": {"order_id": order_id, "operator": page.operator}})
    return _back_to(page, order_id, action, result.status, result.detail)


def retry(page: Page, request: flask.Request) -> flask.Response:
    row = request.form.get("outbox_id", "")
    if not _NUMBER.fullmatch(row):
        raise actions.BadAction("which outbox row? (its number)")
    touched = actions.retry(int(row), page.operator)
    log.info("operator retried outbox row %s", row, extra={"labels": {"operator": page.operator}})
    order_id = request.form.get("order_id") or (touched[0] if touched else "")
    return _back_to(page, order_id, "retry", "accepted" if touched else "ignored",
                    None if touched else "that row is not parked")


def forget(page: Page, request: flask.Request) -> flask.Response:
    """Forget a customer by email (erasure on request). GET shows the form; the email is POSTed,
    never in a URL, and never logged: the log and the page say how many, not whom."""
    if request.method == "GET":
        return page.render("forget.html", erasure=None)
    erasure = actions.forget(request.form.get("email", ""), page.operator)
    log.info("operator forgot a customer", extra={"labels": {
        "operator": page.operator, "sessions": str(erasure.sessions), "records": str(erasure.records)}})
    return page.render("forget.html", erasure=erasure)


def _back_to(page: Page, order_id: str, done: str, outcome: str, detail: str | None) -> flask.Response:
    notice = {"done": done, "outcome": str(outcome), "detail": detail or ""}
    seal = csrf.seal(page.secret, page.operator, order_id, *notice.values())
    query = urlencode({**{k: v for k, v in notice.items() if v}, "seal": seal})
    return flask.redirect(f"/orders/{quote(order_id, safe='')}?{query}", code=303)


def funnel(page: Page, request: flask.Request) -> flask.Response:
    chosen = request.args.get("range", "7d")
    try:
        start, end = report.parse_range(chosen, page.now.date())
    except ValueError as exc:
        raise actions.BadAction(str(exc)) from None
    data = report.funnel_report(bootstrap.container().db, start, end)
    return page.render("funnel.html", data=data, chosen=chosen, chart=report.chart_svg(data["days"]))


def system(page: Page, request: flask.Request) -> flask.Response:
    """The numbers the alerts watch (shared/db/health.py, as `operator health`)."""
    from shared.db import health

    with bootstrap.container().db.read() as conn:
        numbers = health.report(conn, local_queue=health.uses_local_queue(page.settings))
    return page.render("system.html", health=numbers)


def provider(page: Page, request: flask.Request, session_id: str) -> flask.Response:
    def order_id_of(provider_session_id: str) -> tuple[str, str] | None:
        with bootstrap.container().db.read() as conn:
            return reads.order_of_provider_session(conn, provider_session_id)

    return provider_page.view(page, request, session_id, order_id_of)


def audit_trail(page: Page, request: flask.Request) -> flask.Response:
    """Who read what, newest first (viewers and operators alike). By order id (GET, `?order=`),
    or by a customer's email (POSTed, hashed here as the reads were, never stored or logged).
    Looking is itself recorded."""
    source = request.form if request.method == "POST" else request.args
    order_id = source.get("order", "").strip() or None
    email = source.get("email", "").strip()
    before = source.get("before", "").strip()
    if before and not _NUMBER.fullmatch(before):
        raise actions.BadAction("before: the number of an entry")
    if email and request.method == "GET":
        raise actions.BadAction("look up an email with the form: it is posted, so the address stays out of URLs")
    if order_id and audit.is_email(order_id):
        raise actions.BadAction("order: an order id (look up an email in the email field)")
    email_key = None
    if email:
        try:
            fields.email(email, "email")
        except PermanentError:
            raise actions.BadAction("email: a customer's email address", field="email") from None
        email_key = audit.email_target(page.pepper, email)
        if email_key is None:
            raise actions.BadAction("email: looking up by email needs CUSTOMER_KEY_SECRET (searches were recorded "
                                    "without a key)", field="email")
    with bootstrap.container().db.read() as conn:
        entries, next_before = audit_store.recent(conn, order=order_id, email_key=email_key,
                                                  before=int(before) if before else None)
        audit_store.record(conn, ReadEntry(page.actor, ReadAction.VIEW_AUDIT,
                                           order_id=order_id[:audit.TERM_MAX] if order_id else None,
                                           email_key=email_key, detail="next page" if before else ""))
    return page.render("audit.html", entries=entries, next_before=next_before, order=order_id or "", email=email,
                       retention_days=page.settings.retention.sessions.days)


VIEWS = {"provider": provider, "home": home, "sessions": sessions, "order": order, "action": action, "retry": retry,
         "funnel": funnel, "system": system, "forget": forget, "audit_trail": audit_trail}
