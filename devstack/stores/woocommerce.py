"""A strict stand-in for a WooCommerce store's REST API v3 (local stack and tests only).

    with WooCommerceStandIn() as store:              # 127.0.0.1, a free port
        store.add_order(727, total="29.35")
        connector = WooCommerceConnector(store.url, store.consumer_key, store.consumer_secret)
        ...
        assert store.count(727, "create_refund") == 1

    python -m devstack.stores.woocommerce --port 9390    # one line per call received

Routes, under `/wp-json/wc/v3` (what `shared.stores.woocommerce` uses, shaped as WooCommerce
documents them): `GET|PUT /orders/<id>`, `GET|POST /orders/<id>/notes`,
`GET|POST /orders/<id>/refunds`. Basic auth with the consumer key and secret is checked on every
call. Errors are WooCommerce's body, `{"code", "message", "data": {"status"}}`:

- no or wrong credentials: 401 `woocommerce_rest_cannot_view` / `woocommerce_rest_authentication_error`;
- an unknown order: 404 `woocommerce_rest_shop_order_invalid_id` (the order route) or
  `woocommerce_rest_order_invalid_id` (its notes and refunds); an unknown route: 404 `rest_no_route`;
- a field of the wrong type or an unknown status: 400 `rest_invalid_param`; a missing
  `note`: 400 `rest_missing_callback_param`. STRICTER than WordPress on purpose: a field the
  project does not use (a misspelt one) is refused the same way, where WordPress ignores it;
- a negative refund amount: 400 `woocommerce_rest_invalid_order_refund`; an amount over what is
  left to refund, or a gateway that cannot refund (`gateway_refuses`): 500
  `woocommerce_rest_cannot_create_order_refund`, as WooCommerce itself answers (it wraps
  `wc_create_refund()`'s error in a 500).

As WooCommerce does, a status change adds a system note, and a refund of the whole remainder
sets the order `refunded`. Failures to inject: `fail(kind, status, ...)` (429 with Retry-After,
any 5xx), `delay` seconds before every answer (a client timeout). Every call is recorded with
its order id: `calls`, `calls_for(id)`, `count(id, kind)`, `refund_count(id)`, `statuses(id)`.
"""

from __future__ import annotations

import argparse
import base64
import hmac
import itertools
import json
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from devstack import http_server

HOST = "127.0.0.1"
API = "/wp-json/wc/v3"
STATUSES = ("pending", "processing", "on-hold", "completed", "cancelled", "refunded", "failed", "trash",
            "checkout-draft")
_LABELS = {"pending": "Pending payment", "processing": "Processing", "on-hold": "On hold", "completed": "Completed",
           "cancelled": "Cancelled", "refunded": "Refunded", "failed": "Failed", "trash": "Trash",
           "checkout-draft": "Draft"}
# (method, route) -> call kind; the route's <id> is the order id.
_ROUTES = {
    ("GET", ""): "read_order", ("PUT", ""): "update_order", ("POST", ""): "update_order",
    ("GET", "/notes"): "list_notes", ("POST", "/notes"): "create_note",
    ("GET", "/refunds"): "list_refunds", ("POST", "/refunds"): "create_refund",
}
_PATH = re.compile(r"/orders/([0-9]+)(/notes|/refunds)?/?")
_QUERY = {"read_order": {"context", "dp"}, "list_notes": {"context", "type"},
          "list_refunds": {"context", "page", "per_page", "dp"}}
# Fields each write accepts and their JSON types (WooCommerce's schema for what the project sends).
_BODIES: dict[str, dict[str, tuple[type, ...]]] = {
    "update_order": {"status": (str,)},
    "create_note": {"note": (str,), "customer_note": (bool,), "added_by_user": (bool,)},
    "create_refund": {"amount": (str,), "reason": (str,), "api_refund": (bool,), "api_restock": (bool,)},
}
CENT = Decimal("0.01")


class _Error(Exception):
    def __init__(self, status: int, code: str, message: str, **data: Any) -> None:
        super().__init__(code)
        self.status, self.code, self.message, self.data = status, code, message, data

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "data": {"status": self.status, **self.data}}


@dataclass(frozen=True)
class Call:
    """One call received: its kind (`read_order`, `update_order`, `list_notes`, `create_note`,
    `list_refunds`, `create_refund`, or `unknown`), the order id, the JSON body and the answer."""

    method: str
    path: str
    kind: str
    order_id: int | None
    body: Any
    status: int
    code: str | None = None


@dataclass
class _Failure:
    kind: str  # a call kind, or "any"
    status: int
    times: int
    retry_after: str | None
    code: str


@dataclass
class _Order:
    id: int
    status: str
    total: Decimal
    currency: str
    email: str
    customer_id: int
    created: datetime
    notes: list[dict[str, Any]] = field(default_factory=list)
    refunds: list[dict[str, Any]] = field(default_factory=list)

    def refunded(self) -> Decimal:
        return sum((Decimal(r["amount"]) for r in self.refunds), Decimal(0))


class WooCommerceStandIn:
    """The stand-in server, in a thread; a context manager (`start()` / `stop()` also).

    `url` is the store's URL (WOOCOMMERCE_URL): the API is under `url + "/wp-json/wc/v3"`.
    `autocreate`: an order never added is made on its first call (processing, 29.35 USD), for
    the local stack, where the orders come from `devstack.send`; off, it is a 404 as in a store."""

    def __init__(self, consumer_key: str = "ck_standin", consumer_secret: str = "cs_standin", *,
                 port: int = 0, autocreate: bool = False, on_call: Callable[[Call], None] | None = None) -> None:
        self.consumer_key = consumer_key
        self.consumer_secret = consumer_secret
        self.autocreate = autocreate
        self.delay = 0.0  # seconds before every answer
        self.gateway_refuses = False  # the payment gateway cannot refund through its API
        self._on_call = on_call
        self._lock = threading.Lock()
        self._orders: dict[int, _Order] = {}
        self._calls: list[Call] = []
        self._failures: list[_Failure] = []
        self._ids = itertools.count(1000)
        self._server = http_server.StandInServer((HOST, port), self._handler())
        self._thread: threading.Thread | None = None

    # ---- lifecycle ----

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> WooCommerceStandIn:
        self._thread = http_server.serve(self._server, "woocommerce-standin")
        return self

    def stop(self) -> None:
        http_server.stop(self._server, self._thread)

    def __enter__(self) -> WooCommerceStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- the store's state ----

    def add_order(self, order_id: int, *, total: str = "29.35", currency: str = "USD", status: str = "processing",
                  email: str = "buyer@example.com", customer_id: int = 0) -> dict[str, Any]:
        with self._lock:
            self._orders[int(order_id)] = _Order(int(order_id), status, Decimal(total), currency, email, customer_id,
                                                 datetime.now(timezone.utc).replace(microsecond=0))
            return self._order_json(self._orders[int(order_id)])

    def set_status(self, order_id: int, status: str) -> None:
        """The store's own staff change the status (a note is added, as in WooCommerce)."""
        with self._lock:
            self._change_status(self._orders[int(order_id)], status)

    def add_refund(self, order_id: int, amount: str, reason: str = "") -> dict[str, Any]:
        """The store's staff refund part of the order themselves."""
        with self._lock:
            return self._refund(self._orders[int(order_id)], Decimal(amount), reason, api_refund=False)

    def order(self, order_id: int) -> dict[str, Any]:
        """The order as `GET /orders/<id>` shows it, plus `notes` (the texts) and `refund_list`."""
        with self._lock:
            found = self._orders[int(order_id)]
            return {**self._order_json(found), "notes": [n["note"] for n in found.notes],
                    "refund_list": [dict(r) for r in found.refunds]}

    # ---- failures ----

    def fail(self, kind: str, status: int, *, times: int = 1, retry_after: str | None = None,
             code: str | None = None) -> None:
        """Answer the next `times` calls of `kind` (or "any") with `status` and WooCommerce's
        error body; a 429 carries `Retry-After: retry_after` when given."""
        default = {429: "woocommerce_rest_too_many_requests", 401: "woocommerce_rest_authentication_error",
                   403: "woocommerce_rest_cannot_edit"}.get(status, "internal_server_error")
        with self._lock:
            self._failures.append(_Failure(kind, status, times, retry_after, code or default))

    # ---- what was received ----

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def calls_for(self, order_id: int) -> list[Call]:
        return [c for c in self.calls if c.order_id == int(order_id)]

    def count(self, order_id: int, kind: str, *, ok: bool = True) -> int:
        """Calls of `kind` for the order; only the ones that succeeded (2xx) unless ok=False."""
        return sum(1 for c in self.calls_for(order_id) if c.kind == kind and (not ok or 200 <= c.status < 300))

    def refund_count(self, order_id: int) -> int:
        """Refunds the order holds now (made through the API or by the store's staff)."""
        with self._lock:
            return len(self._orders[int(order_id)].refunds)

    def statuses(self, order_id: int) -> list[str]:
        """The statuses set through the API, in order (successful `PUT`s only)."""
        return [c.body["status"] for c in self.calls_for(order_id) if c.kind == "update_order" and c.status == 200]

    # ---- serving ----

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # the calls are recorded instead
                return

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, body, headers = standin._answer(self.command, self.path, self.headers.get("Authorization"),
                                                        self.headers.get("Content-Type"), raw)
                if standin.delay:
                    time.sleep(standin.delay)
                payload = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json; charset=UTF-8")
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout)
                    pass

            do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _serve

        return Handler

    def _answer(self, method: str, target: str, authorization: str | None, content_type: str | None,
                raw: bytes) -> tuple[int, Any, dict[str, str]]:
        parts = urlsplit(target)
        match = _PATH.fullmatch(parts.path[len(API):]) if parts.path.startswith(API) else None
        kind = _ROUTES.get((method, match.group(2) or "")) if match else None
        order_id = int(match.group(1)) if match else None
        body: Any = None
        headers: dict[str, str] = {}
        with self._lock:
            try:
                self._authenticate(authorization)
                if kind is None:
                    raise _Error(404, "rest_no_route", "No route was found matching the URL and request method.")
                failure = self._take_failure(kind)
                if failure:
                    if failure.retry_after is not None:
                        headers["Retry-After"] = failure.retry_after
                    raise _Error(failure.status, failure.code, "Injected failure.")
                self._check_query(kind, parse_qs(parts.query, keep_blank_values=True))
                if method in ("PUT", "POST"):
                    body = self._json_body(content_type, raw)
                status, answer = self._route(kind, order_id, body)
                code = None
            except _Error as error:
                status, answer, code = error.status, error.body(), error.code
            call = Call(method, parts.path, kind or "unknown", order_id, body, status, code)
            self._calls.append(call)
        if self._on_call:
            self._on_call(call)
        return status, answer, headers

    def _authenticate(self, authorization: str | None) -> None:
        if not authorization or not authorization.startswith("Basic "):
            raise _Error(401, "woocommerce_rest_cannot_view", "Sorry, you cannot list resources.")
        try:
            key, _, secret = base64.b64decode(authorization[6:], validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise _Error(401, "woocommerce_rest_authentication_error", "Consumer key is invalid.") from None
        if not hmac.compare_digest(key.encode(), self.consumer_key.encode()):
            raise _Error(401, "woocommerce_rest_authentication_error", "Consumer key is invalid.")
        if not hmac.compare_digest(secret.encode(), self.consumer_secret.encode()):
            raise _Error(401, "woocommerce_rest_authentication_error", "Consumer secret is invalid.")

    def _take_failure(self, kind: str) -> _Failure | None:
        for failure in self._failures:
            if failure.kind in (kind, "any") and failure.times > 0:
                failure.times -= 1
                return failure
        return None

    @staticmethod
    def _check_query(kind: str, query: dict[str, list[str]]) -> None:
        unknown = sorted(set(query) - _QUERY.get(kind, set()))
        if unknown:
            raise _Error(400, "rest_invalid_param", f"Invalid parameter(s): {', '.join(unknown)}",
                         params={name: "not a parameter of this route" for name in unknown})
        for name in ("page", "per_page", "dp"):
            if name in query and not (query[name][0].isdigit() and 0 < int(query[name][0]) <= 100):
                raise _Error(400, "rest_invalid_param", f"Invalid parameter(s): {name}",
                             params={name: f"{name} must be between 1 (inclusive) and 100 (inclusive)"})
        if kind == "list_notes" and query.get("type", ["any"])[0] not in ("any", "customer", "internal"):
            raise _Error(400, "rest_invalid_param", "Invalid parameter(s): type",
                         params={"type": "type is not one of any, customer, and internal."})

    @staticmethod
    def _json_body(content_type: str | None, raw: bytes) -> Any:
        if not (content_type or "").startswith("application/json"):
            raise _Error(400, "rest_invalid_json", "Send a JSON body (Content-Type: application/json).")
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            raise _Error(400, "rest_invalid_json", "Invalid JSON body passed.") from None

    def _route(self, kind: str, order_id: int, body: Any) -> tuple[int, Any]:
        if kind in _BODIES:
            self._check_body(kind, body)
        found = self._orders.get(order_id)
        if found is None and self.autocreate:
            found = self._orders[order_id] = _Order(order_id, "processing", Decimal("29.35"), "USD",
                                                    "buyer@example.com", 0, datetime.now(timezone.utc))
        if found is None:
            if kind in ("read_order", "update_order"):
                raise _Error(404, "woocommerce_rest_shop_order_invalid_id", "Invalid ID.")
            raise _Error(404, "woocommerce_rest_order_invalid_id", "Invalid order ID.")
        if kind == "read_order":
            return 200, self._order_json(found)
        if kind == "update_order":
            if "status" in body:
                self._change_status(found, body["status"])
            return 200, self._order_json(found)
        if kind == "list_notes":
            return 200, [dict(n) for n in reversed(found.notes)]
        if kind == "create_note":
            return 201, self._note(found, body["note"], customer_note=body.get("customer_note", False),
                                   author="WooCommerce" if body.get("added_by_user") else "system")
        if kind == "list_refunds":
            return 200, [dict(r) for r in reversed(found.refunds)]
        # create_refund
        try:
            amount = Decimal(body.get("amount", "0"))
            if not amount.is_finite():
                raise InvalidOperation
        except InvalidOperation:
            raise _Error(400, "rest_invalid_param", "Invalid parameter(s): amount",
                         params={"amount": "amount is not a decimal number."}) from None
        if amount < 0:
            raise _Error(400, "woocommerce_rest_invalid_order_refund", "Refund amount must be greater than zero.")
        if amount > found.total - found.refunded():
            raise _Error(500, "woocommerce_rest_cannot_create_order_refund", "Invalid refund amount.")
        if body.get("api_refund", True) and self.gateway_refuses:
            raise _Error(500, "woocommerce_rest_cannot_create_order_refund",
                         "The payment gateway for this order does not support automatic refunds.")
        return 201, self._refund(found, amount, body.get("reason", ""), api_refund=body.get("api_refund", True))

    @staticmethod
    def _check_body(kind: str, body: Any) -> None:
        if not isinstance(body, dict):
            raise _Error(400, "rest_invalid_json", "The body must be a JSON object.")
        allowed = _BODIES[kind]
        for name, value in body.items():
            if name not in allowed:
                raise _Error(400, "rest_invalid_param", f"Invalid parameter(s): {name}",
                             params={name: f"{name} is not a field this stand-in accepts for {kind}."})
            if isinstance(value, bool) != (allowed[name] == (bool,)) or not isinstance(value, allowed[name]):
                type_name = "boolean" if allowed[name] == (bool,) else "string"
                raise _Error(400, "rest_invalid_param", f"Invalid parameter(s): {name}",
                             params={name: f"{name} is not of type {type_name}."})
        if kind == "update_order" and "status" in body and body["status"] not in STATUSES:
            raise _Error(400, "rest_invalid_param", "Invalid parameter(s): status",
                         params={"status": f"status is not one of {', '.join(STATUSES)}."})
        if kind == "create_note" and not body.get("note"):
            raise _Error(400, "rest_missing_callback_param", "Missing parameter(s): note", params=["note"])

    # ---- WooCommerce's own behaviour (under the lock) ----

    def _change_status(self, order: _Order, status: str) -> None:
        if status != order.status:
            self._note(order, f"Order status changed from {_LABELS[order.status]} to {_LABELS[status]}.")
            order.status = status

    def _note(self, order: _Order, text: str, *, customer_note: bool = False, author: str = "system") -> dict[str, Any]:
        now = datetime.now(timezone.utc)
        note = {"id": next(self._ids), "author": author, "date_created": _wc_time(now),
                "date_created_gmt": _wc_time(now), "note": text, "customer_note": customer_note}
        order.notes.append(note)
        return dict(note)

    def _refund(self, order: _Order, amount: Decimal, reason: str, *, api_refund: bool) -> dict[str, Any]:
        now = datetime.now(timezone.utc)
        refund = {"id": next(self._ids), "date_created": _wc_time(now), "date_created_gmt": _wc_time(now),
                  "amount": str(amount.quantize(CENT)), "reason": reason, "refunded_by": 1,
                  "refunded_payment": bool(api_refund), "meta_data": [], "line_items": []}
        order.refunds.append(refund)
        if order.total - order.refunded() <= 0:  # wc_create_refund(): fully refunded -> `refunded`
            self._change_status(order, "refunded")
        return dict(refund)

    def _order_json(self, order: _Order) -> dict[str, Any]:
        return {
            "id": order.id, "parent_id": 0, "number": str(order.id), "status": order.status,
            "currency": order.currency, "date_created": _wc_time(order.created),
            "date_created_gmt": _wc_time(order.created), "total": str(order.total.quantize(CENT)),
            "customer_id": order.customer_id,
            "billing": {"first_name": "", "last_name": "", "email": order.email},
            "refunds": [{"id": r["id"], "reason": r["reason"], "total": f"-{r['amount']}"} for r in order.refunds],
        }


def _wc_time(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


READS = frozenset({"read_order", "list_notes", "list_refunds"})


def story_line(call: Call, *, reads: bool = True) -> str | None:
    """One line for a call received (order id, call kind, status or amount sent, the answer);
    None for a successful read when `reads` is False (the local stack shows the writes)."""
    if not reads and call.kind in READS and call.status < 300:
        return None
    what = f"order woocommerce:{call.order_id}: " if call.order_id is not None else ""
    detail = ""
    if call.kind == "update_order" and isinstance(call.body, dict):
        detail = f" status={call.body.get('status')}"
    elif call.kind == "create_refund" and isinstance(call.body, dict):
        detail = f" amount={call.body.get('amount')}"
    return (f"{datetime.now():%H:%M:%S}  woocommerce stand-in: {what}{call.kind}{detail} -> {call.status}"
            f"{' ' + call.code if call.code else ''}")


def _print_call(call: Call) -> None:
    print(story_line(call), flush=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.stores.woocommerce", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--key", default="ck_standin", help="the consumer key it accepts")
    parser.add_argument("--secret", default="cs_standin", help="the consumer secret it accepts")
    args = parser.parse_args(argv)
    standin = WooCommerceStandIn(args.key, args.secret, port=args.port, autocreate=True, on_call=_print_call)
    print(f"woocommerce stand-in: WOOCOMMERCE_URL={standin.url}", flush=True)
    try:
        standin._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        standin._server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
