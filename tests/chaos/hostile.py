"""Hostile input for every route of the local stack: Hypothesis strategies and schemathesis.

Requests are generated first (Hypothesis drives the generation, nothing is
asserted inside it, so nothing is shrunk) and then sent 16 at once. Routes:
the three webhooks (signed correctly with hostile content, or signed badly),
the timer endpoint, and the three subscribers with malformed CloudEvents;
schemathesis fuzzes docs/openapi.yaml. Customer addresses come from a known
pool, so the logs can be searched for them afterwards.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable

from devstack.run import FUNCTIONS
from devstack.signing import lightspeed_headers, standard_webhook_headers, veriff_headers
from shared.inbound import sources
from tests.chaos.harness import ChaosRun, ChaosWorld, Clients, Request, customer_email
from tests.chaos.scenarios import Report
from tests.raw_http import PATHS, exchange, garbage_requests, is_unknown_coding, malformed_requests, status_of
from tests.stack import ROOT

OPENAPI = ROOT / "docs" / "openapi.yaml"
PUBSUB_TYPE = "google.cloud.pubsub.topic.v1.messagePublished"
SUBSCRIBER_OFFSETS = {"send_customer_email": 3, "record_analytics": 4, "request_refund": 5}
JSON = {"Content-Type": "application/json"}

NASTY_TEXT = st.sampled_from([
    "\ud800", "a\udfffb", "\x00", "nul\x00here", "\u202e", "\ufeff", "", " ", "💥" * 50, "é" * 300,
    "'; DROP TABLE verification_sessions; --", "%s%n", "../../etc/passwd", "x" * 70_000,
])
NASTY_DATES = st.sampled_from([
    "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2026-02-30T10:00:00Z", "1970-01-01",
    "2019-07-26 17:31:40", "yesterday", "", "2026-13-01T00:00:00Z", "+275760-09-13T00:00:00Z", "\ud800",
])
HUGE_INTS = st.integers(min_value=4301, max_value=6000).map(lambda n: 10**n - 1)
SCALARS = (st.none() | st.booleans() | st.integers() | HUGE_INTS | st.floats(allow_nan=False)
           | st.text(max_size=40) | NASTY_TEXT | NASTY_DATES)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6)
# What an HTTP client will send as a header value: printable ASCII, no surrounding whitespace.
HEADER_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60).map(str.strip)


def _dumps(value) -> bytes:
    """JSON with lone surrogates and NULs as escapes (`"\\ud800"`), as a sender's serializer writes them."""
    try:
        return json.dumps(value, ensure_ascii=True).encode()
    except ValueError:  # integers over Python's digit limit: write the literal by hand
        return b'{"orderTotal": ' + b"9" * 5000 + b"}"


def raw_bodies():
    """Bodies no serializer writes: deep nesting, long literals, broken UTF-8, truncation."""
    return st.one_of(
        st.integers(1_000, 100_000).map(lambda d: b"[" * d + b"]" * d),
        st.integers(1_000, 50_000).map(lambda d: b'{"a":' * d + b"1" + b"}" * d),
        st.just(b'{"event": "order.created", "orderId": 1' + b"0" * 5000 + b"}"),
        st.binary(max_size=200),
        st.sampled_from([b"", b"{", b"null", b"[]", b'"\\ud800"', b"\xff\xfe{}", b'{"a": "\\u0000"}']),
    )


class Generated:
    """What the strategies produced, by family: (request, order id it names or None)."""

    def __init__(self, run: ChaosRun, emails: list[str]) -> None:
        self.run = run
        self.emails = emails
        self.families: dict[str, list[tuple[Request, str | None]]] = {}

    def collect(self, family: str, strategy, count: int) -> None:
        found = self.families.setdefault(family, [])

        @settings(max_examples=count, database=None, deadline=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(strategy)
        def keep(item) -> None:
            found.append(item)

        keep()

    # -- the strategies, each building a ready request

    def order_ids(self):
        return st.one_of(st.integers(0, 10**6).map(lambda i: f"{self.run.prefix}-h{i}"),
                         NASTY_TEXT.map(lambda t: f"{self.run.prefix}-{t}"), VALUES)

    def order_bodies(self):
        return st.fixed_dictionaries({
            "event": st.sampled_from(["order.created", "order.created", "order.updated"]) | VALUES,
            "orderId": self.order_ids(),
            "customerEmail": st.sampled_from(self.emails) | st.sampled_from(self.emails).map(lambda e: e + "\x00")
            | VALUES,
        }, optional={"customerId": VALUES, "orderTotal": VALUES, "currency": VALUES, "createdAt": NASTY_DATES})

    def signed_orders(self):
        def build(pair):
            body_dict, raw = pair
            body = raw if raw is not None else _dumps(body_dict)
            headers = standard_webhook_headers(self.run.secrets["ORDER_WEBHOOK_SECRET"], body)
            order = body_dict.get("orderId") if raw is None else None
            return Request(self.run.url + "/webhooks/orders", body, headers, headers["webhook-id"]), order
        return st.tuples(self.order_bodies(), st.none() | st.none() | raw_bodies()).map(build)

    def signed_veriff(self):
        decision = st.fixed_dictionaries({
            "status": st.just("success") | VALUES,
            "verification": st.fixed_dictionaries({
                "id": st.uuids().map(str) | VALUES, "code": st.sampled_from([9001, 9102, 9103, 9104, 9121]) | VALUES,
                "status": st.sampled_from(["approved", "declined", "review"]) | VALUES,
                "vendorData": self.order_ids(), "decisionTime": NASTY_DATES,
            }, optional={"person": st.fixed_dictionaries({"dateOfBirth": NASTY_DATES}), "reasonCode": VALUES}),
        })
        event = st.fixed_dictionaries({"id": VALUES, "attemptId": VALUES, "feature": VALUES,
                                       "code": st.sampled_from([7001, 7002]) | VALUES, "action": VALUES,
                                       "vendorData": self.order_ids()})

        def build(body):
            body = body if isinstance(body, bytes) else _dumps(body)
            headers = veriff_headers(self.run.secrets["VERIFF_SHARED_SECRET"], self.run.secrets["VERIFF_API_KEY"],
                                     body)
            return Request(self.run.url + "/webhooks/veriff", body, headers), None
        return (decision | event | raw_bodies()).map(build)

    def signed_lightspeed(self):
        sale = st.fixed_dictionaries({
            "id": self.order_ids(),
            "status": st.sampled_from(["CLOSED", "VOIDED", "SAVED", "AWAITING_PICKUP"]) | VALUES,
        }, optional={"customer": st.fixed_dictionaries({"email": st.sampled_from(self.emails) | VALUES}),
                     "totals": st.fixed_dictionaries({"total_price": VALUES}), "created_at": NASTY_DATES,
                     "return_for": VALUES, "version": VALUES})
        payload = sale.map(lambda s: _dumps(s).decode()) | st.text(max_size=50) | NASTY_TEXT

        def build(fields):
            body = urlencode(fields, errors="surrogatepass").encode()  # a lone surrogate as broken UTF-8
            headers = lightspeed_headers(self.run.secrets["LIGHTSPEED_CLIENT_SECRET"], body)
            return Request(self.run.url + "/webhooks/lightspeed", body, headers), None
        return st.fixed_dictionaries({"payload": payload}, optional={"type": st.just("sale.update") | NASTY_TEXT}
                                     ).map(build)

    def bad_signatures(self):
        """A well-formed request of each webhook route whose signature is wrong, missing, stale or garbage
        ("stale": an old timestamp for orders, a wrong API key for Veriff, a wrong secret for Lightspeed)."""
        def build(args):
            route, email, mangle, garbage = args
            order = f"{self.run.prefix}-bad"
            if route == "orders":
                body = json.dumps({"event": "order.created", "orderId": order, "customerEmail": email}).encode()
                stale = int(time.time()) - 3600 if mangle == "stale" else None
                headers = standard_webhook_headers(self.run.secrets["ORDER_WEBHOOK_SECRET"], body, timestamp=stale)
                names = ["webhook-signature"]
            elif route == "veriff":
                body = json.dumps({"status": "success", "verification": {
                    "id": "v", "code": 9001, "status": "approved", "vendorData": order}}).encode()
                headers = veriff_headers(self.run.secrets["VERIFF_SHARED_SECRET"], "wrong-client"
                                         if mangle == "stale" else self.run.secrets["VERIFF_API_KEY"], body)
                names = ["X-HMAC-SIGNATURE"]
            else:
                body = urlencode({"type": "sale.update", "payload": json.dumps(
                    {"id": order, "status": "CLOSED", "customer": {"email": email}})}).encode()
                headers = lightspeed_headers("wrong-secret" if mangle == "stale"
                                             else self.run.secrets["LIGHTSPEED_CLIENT_SECRET"], body)
                names = ["X-Signature"]
            if mangle == "missing":
                for name in names:
                    headers.pop(name)
            elif mangle == "garbage":
                headers[names[0]] = garbage
            elif mangle == "flipped":
                value = headers[names[0]]
                other = "0" if value[-3].lower() != "0" else "1"  # not merely the same hex digit in another case
                headers[names[0]] = value[:-3] + other + value[-2:]
            elif mangle == "body":
                body = body + b" "
            return Request(f"{self.run.url}/webhooks/{route}", body, headers), None
        return st.tuples(st.sampled_from(["orders", "veriff", "lightspeed"]), st.sampled_from(self.emails),
                         st.sampled_from(["missing", "garbage", "flipped", "body", "stale"]), HEADER_TEXT).map(build)

    def timers(self):
        timer = st.fixed_dictionaries({"v": st.just(1) | VALUES, "order_id": self.order_ids(),
                                       "kind": st.sampled_from(["reminder", "deadline"]) | VALUES,
                                       "reminder_index": st.integers(0, 3) | VALUES,
                                       "deadline_version": st.integers(1, 3) | VALUES})
        return (timer.map(_dumps) | raw_bodies()).map(lambda body: (Request(self.run.port(1), body, dict(JSON)), None))

    def cloud_events(self):
        message = st.fixed_dictionaries({}, optional={
            "data": VALUES | st.binary(max_size=100).map(lambda b: base64.b64encode(b).decode())
            | VALUES.map(lambda v: base64.b64encode(_dumps(v)).decode()),
            "attributes": VALUES | st.dictionaries(st.text(max_size=8), VALUES, max_size=3),
            "messageId": VALUES, "publishTime": NASTY_DATES | VALUES, "orderingKey": VALUES})
        data = st.fixed_dictionaries({}, optional={"message": message | VALUES, "subscription": VALUES})

        def build(args):
            subscriber, payload, event_id, raw = args
            body = raw if raw is not None else _dumps(payload)
            headers = {**JSON, "ce-id": event_id, "ce-specversion": "1.0", "ce-type": PUBSUB_TYPE,
                       "ce-source": "//pubsub.googleapis.com/projects/local/topics/x"}
            return Request(self.run.port(SUBSCRIBER_OFFSETS[subscriber]), body, headers), None
        return st.tuples(st.sampled_from(sorted(SUBSCRIBER_OFFSETS)), data, HEADER_TEXT.filter(bool),
                         st.none() | st.none() | raw_bodies()).map(build)


def schemathesis_statuses(run: ChaosRun, examples: int) -> list[tuple[str, int | str]]:
    """Positive and negative cases of every operation in docs/openapi.yaml, sent to the stack."""
    schema = schemathesis.openapi.from_path(Path(OPENAPI))
    seen: list[tuple[str, int | str]] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

            @settings(max_examples=examples, database=None, deadline=None, phases=[Phase.generate],
                      suppress_health_check=list(HealthCheck))
            @given(operation.as_strategy(generation_mode=mode))
            def call(case) -> None:
                try:
                    response = case.call(base_url=run.url, timeout=30)
                    status = response.status_code
                    if status == 200 and operation.label == "POST /webhooks/woocommerce" and _is_ping(response):
                        # WooCommerce's unsigned ping (`webhook_id=N`, documented in the OpenAPI file) is
                        # answered 200 `ignored` and stores nothing (the table counts are checked)
                        status = "200 ignored (ping)"
                except Exception as exc:  # noqa: BLE001 - a client-side refusal is recorded, not raised
                    status = type(exc).__name__
                seen.append((operation.label, status))

            try:
                call()
            except Unsatisfiable:  # nothing to make invalid (a GET without parameters): positive cases only
                seen.append((operation.label, f"no {mode.value} cases"))
    return seen


def _is_ping(response) -> bool:
    try:
        return response.json().get("status") == "ignored"
    except ValueError:
        return False


def leaked_lines(text: str, needles: list[str], fragment: int = 8) -> list[str]:
    """Log lines holding any needle or any `fragment`-character piece of one."""
    pieces = {n[i:i + fragment] for n in needles for i in range(max(1, len(n) - fragment + 1))}
    return [line for line in text.splitlines() if any(p in line for p in pieces)]


def hostile_input(world: ChaosWorld, *, per_family: int = 1700, schema_examples: int = 100,
                  raw_per_function: int = 300) -> Report:
    report = Report("hostile_input")
    with world.run("hostile") as run:
        emails = [customer_email(f"{run.prefix}-customer-{i}") for i in range(20)]
        generated = Generated(run, emails)
        clients = Clients()

        before = run.table_counts()
        generated.collect("bad signature", generated.bad_signatures(), per_family)
        bad = clients.run([r for r, _ in generated.families["bad signature"]])
        schema_seen = schemathesis_statuses(run, schema_examples)
        after = run.table_counts()
        report.figures["bad signatures"] = dict(bad.count())
        report.check(set(bad.count()) == {401}, f"bad signatures answered {dict(bad.count())}, not all 401")
        report.check(before == after, f"rows written by rejected requests: "
                                      f"{ {t: after[t] - before[t] for t in after if after[t] != before.get(t)} }")
        schema_statuses = {}
        for label, status in schema_seen:
            schema_statuses.setdefault(label, {}).setdefault(status, 0)
            schema_statuses[label][status] += 1
        report.figures["schemathesis"] = schema_statuses
        webhook_2xx = [s for label, s in schema_seen if "/webhooks/" in label and isinstance(s, int) and s < 300]
        report.check(not webhook_2xx, f"{len(webhook_2xx)} unsigned schemathesis requests were accepted")
        schema_5xx = [(label, s) for label, s in schema_seen if isinstance(s, int) and s >= 500]
        report.check(not schema_5xx, f"{len(schema_5xx)} schemathesis requests answered 5xx")

        for family, strategy in [("signed orders", generated.signed_orders()),
                                 ("signed veriff", generated.signed_veriff()),
                                 ("signed lightspeed", generated.signed_lightspeed()),
                                 ("timer", generated.timers()), ("cloudevents", generated.cloud_events())]:
            generated.collect(family, strategy, per_family)
            items = generated.families[family]
            tally = clients.run([r for r, _ in items], keep_bodies=True)
            report.figures[family] = dict(tally.count())
            errors = tally.server_errors() + sum(1 for s in tally.final.values() if isinstance(s, str))
            report.check(errors == 0, f"{family}: {errors} answers 5xx or none ({dict(tally.count())})")
            if family == "signed orders":
                _rejected_left_nothing(report, run, items, tally)
        report.figures["requests"] = len(schema_seen) + sum(len(v) for v in generated.families.values())
        raw_http(report, run, raw_per_function)
        unsigned_while_postgres_is_down(report, world, run)

        secrets = [v.removeprefix("whsec_") for v in run.secrets.values()] + [world.refund_token]
        leaks = leaked_lines(run.log_text(), emails + [e.split("@")[0] for e in emails] + secrets)
        report.figures["log lines with an email or secret"] = len(leaks)
        report.check(not leaks, f"{len(leaks)} log lines hold a customer email, a secret or a piece of one")
        report.figures["seconds"] = run.seconds()
    return report


def _storable(text: str) -> bool:
    """PostgreSQL text holds no NUL and no lone surrogate: such an id cannot have a row to look for."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def _rejected_left_nothing(report: Report, run: ChaosRun, items, tally) -> None:
    """A signed order webhook answered 4xx wrote no idempotency row and no session."""
    rejected_ids = [r.key for i, (r, _) in enumerate(items) if isinstance(tally.final[i], int)
                    and 400 <= tally.final[i] < 500]
    accepted_orders = {o for i, (_, o) in enumerate(items) if isinstance(o, str) and tally.final[i] == 200}
    rejected_orders = [o for i, (_, o) in enumerate(items) if isinstance(o, str) and isinstance(tally.final[i], int)
                       and 400 <= tally.final[i] < 500 and o not in accepted_orders and _storable(o)]
    rows = run.scalar("SELECT count(*) FROM webhook_events WHERE event_id = ANY(:ids)", ids=rejected_ids)
    sessions = run.scalar("SELECT count(*) FROM verification_sessions WHERE order_id = ANY(:ids)", ids=rejected_orders)
    report.figures["rows for rejected signed orders"] = rows + sessions
    report.check(rows + sessions == 0, f"{rows} idempotency rows and {sessions} sessions for rejected orders")


# ---- raw HTTP, and unsigned requests with PostgreSQL stopped (issue 24, items 5 and 6) -----------

# What a public error body must not name: a setting (shared/config's variable names), a schema or
# software version, the database or its driver, a traceback.
SETTING_NAMES = sorted(set(re.findall(r'"([A-Z][A-Z0-9_]{5,})"', (ROOT / "shared" / "config.py").read_text())))
SETTING = re.compile(r"\b(?:%s)\b" % "|".join(SETTING_NAMES))  # as written: `operator` in a page is no setting
# (gunicorn's 400 for a request line it cannot read repeats the client's own: "Invalid HTTP Version: (9, 9)".)
INTERNALS = re.compile("|".join([r"schema", r"migrat", r"(?<!HTTP )\bversion\W{0,3}v?\d", r"database", r"postgres",
                                 r"pg8000", r"sqlalchemy", r"psycopg", r"traceback", r"gunicorn/\d", r"werkzeug/\d"]),
                       re.IGNORECASE)
RAW_TIMEOUT = 5.0  # seconds a raw exchange may wait for the server to answer or close


def _function_ports(run: ChaosRun) -> dict[str, int]:
    return {name: run.stack.base_port + offset for name, (_, offset) in FUNCTIONS.items()}


def _send_raw(cases: list[tuple[str, str, int, bytes, bool]]) -> list[tuple[str, str, bytes]]:
    """(function, what, answer) for each (function, what, port, bytes, close the write side), 8 at once."""
    def one(case):
        function, what, port, raw, close = case
        try:
            return function, what, exchange(port, raw, close_write=close, timeout=RAW_TIMEOUT)
        except OSError as exc:  # refused or reset before anything came back: a closed connection
            return function, what, type(exc).__name__.encode()
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, cases))


def _internal(body: str):
    return SETTING.search(body) or INTERNALS.search(body)


def _answers_figures(report: Report, label: str, answers: list[tuple[str, str, bytes]]) -> None:
    """Statuses by function, 5xx (gunicorn's 501 for an unknown transfer coding apart) and bodies naming
    an internal; every figure under `label`."""
    statuses = {}
    for function, _, answer in answers:
        status = status_of(answer) if answer[:5] == b"HTTP/" else None
        statuses.setdefault(function, Counter())[str(status) if status else "closed"] += 1
    unknown_coding = sum(1 for _, _, a in answers if is_unknown_coding(a))
    server_errors = [(f, what, a[:120]) for f, what, a in answers
                     if a[:5] == b"HTTP/" and (status_of(a) or 0) >= 500 and not is_unknown_coding(a)]
    named = [(f, what, match.group(0)) for f, what, a in answers
             if (match := _internal(a.partition(b"\r\n\r\n")[2].decode("utf-8", "replace")))]
    report.figures[f"{label}: requests"] = len(answers)
    report.figures[f"{label}: statuses by function"] = {f: dict(c) for f, c in statuses.items()}
    report.figures[f"{label}: gunicorn 501 (unknown transfer coding)"] = unknown_coding
    report.figures[f"{label}: 5xx"] = len(server_errors)
    report.figures[f"{label}: bodies naming an internal"] = len(named)
    report.check(not server_errors, f"{label}: {len(server_errors)} answers 5xx (e.g. {server_errors[:3]})")
    report.check(not named, f"{label}: {len(named)} bodies name a setting, version or the database "
                            f"(e.g. {named[:3]})")


def raw_http(report: Report, run: ChaosRun, per_function: int) -> None:
    """Item 5's malformed shapes and `per_function` seeded mangled requests to every function's port."""
    cases = []
    for index, (function, port) in enumerate(_function_ports(run).items()):
        path = PATHS.get(function, "/")
        made = malformed_requests(path) + garbage_requests(path, per_function, seed=2400 + index)
        cases += [(function, what, port, raw, close) for what, raw, close in made]
    answers = _send_raw(cases)
    _answers_figures(report, "raw HTTP", answers)
    report.check(len(answers) >= 500 or per_function < 70, f"only {len(answers)} raw requests")


def _http(method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close",
             f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _unsigned_requests(run: ChaosRun) -> list[tuple[str, str, int, bytes, bool]]:
    """Every webhook route without its signature (and with a garbage one), the console's POSTs
    without a CSRF token, and to every other function a delivery it cannot parse."""
    ports = _function_ports(run)
    order = json.dumps({"event": "order.created", "orderId": f"{run.prefix}-down", "id": 1,
                        "customerEmail": customer_email(f"{run.prefix}-down"), "status": "processing"}).encode()
    form = urlencode({"type": "sale.update", "payload": json.dumps({"id": f"{run.prefix}-down"})}).encode()
    garbage_signatures = {"webhook-id": "msg_x", "webhook-timestamp": str(int(time.time())),
                          "webhook-signature": "v1,AAAA", "X-HMAC-SIGNATURE": "00" * 32, "X-AUTH-CLIENT": "x",
                          "X-Signature": "signature=abc, algorithm=HMAC-SHA256", "X-Shopify-Hmac-Sha256": "AAAA",
                          "X-Shopify-Shop-Domain": "x.myshopify.com", "X-Shopify-Topic": "orders/paid",
                          "X-WC-Webhook-Signature": "AAAA", "X-WC-Webhook-Topic": "order.updated"}
    cases = []
    for path in sorted(sources()):
        content = "application/x-www-form-urlencoded" if "lightspeed" in path else "application/json"
        body = form if "lightspeed" in path else order
        for what, extra in (("unsigned", {}), ("garbage signature", garbage_signatures)):
            raw = _http("POST", path, {"Content-Type": content, **extra}, body)
            cases.append(("webhook_intake", f"{what} {path}", ports["webhook_intake"], raw, False))
    csrf_form = {"Content-Type": "application/x-www-form-urlencoded"}
    for path in (f"/orders/{run.prefix}-down/actions/cancel", "/outbox/retry", "/forget", "/sessions"):
        raw = _http("POST", path, csrf_form, b"order_id=x&reason=y")
        cases.append(("operator_console", f"no CSRF token {path}", ports["operator_console"], raw, False))
    event = {"Content-Type": "application/json", "ce-id": "down", "ce-specversion": "1.0", "ce-type": PUBSUB_TYPE,
             "ce-source": "//pubsub.googleapis.com/projects/local/topics/x"}
    # (method, path, headers, body) each function cannot take: any POST / is Cloud Scheduler's call to
    # `sweep` (503 while the database is down, as its /health), so the sweep gets a wrong method and path
    unparseable = {"timer_expiry": [("POST", "/", JSON, b"{}"), ("POST", "/", JSON, b'{"v": 1, "kind": "deadline"}'),
                                    ("POST", "/", JSON, b"[")],
                   "sweep": [("PUT", "/", JSON, b"["), ("POST", "/nowhere", JSON, b"{}"), ("POST", "/health", JSON, b"")]}
    for subscriber in SUBSCRIBER_OFFSETS:
        unparseable[subscriber] = [("POST", "/", event, b'{"message": {"data": "!!not base64!!"}}'),
                                   ("POST", "/", event, b"{}"), ("POST", "/", event, b'{"message": {"data": "e30="}}'),
                                   ("POST", "/", JSON, b"{")]
    for function, requests_ in unparseable.items():
        for n, (method, path, headers, body) in enumerate(requests_):
            cases.append((function, f"unparseable {n}", ports[function], _http(method, path, headers, body), False))
    for function, port in ports.items():  # item 5's shapes once more, with nothing behind them
        cases += [(function, what, port, raw, close) for what, raw, close in malformed_requests(PATHS.get(function, "/"))]
    return cases


def unsigned_while_postgres_is_down(report: Report, world: ChaosWorld, run: ChaosRun) -> None:
    """PostgreSQL stopped: unsigned and unparseable requests to every function are refused on what
    they are (401, 403, 400, acknowledged), never 5xx, since none of them needs the database."""
    world.postgres.stop("fast")
    try:
        answers = _send_raw(_unsigned_requests(run))
    finally:
        world.postgres.start()
    _answers_figures(report, "PostgreSQL down", answers)
    webhooks = Counter(str(status_of(a)) for f, what, a in answers if what.startswith(("unsigned", "garbage sig")))
    report.figures["PostgreSQL down: unsigned webhooks"] = dict(webhooks)
    report.check(set(webhooks) == {"401"}, f"unsigned webhooks with PostgreSQL down answered {dict(webhooks)}")
