"""A strict stand-in for Shopify's Admin GraphQL endpoint, on 127.0.0.1 (tests and the local stack).

Every request is checked as Shopify would: the path (`/admin/api/<version>/graphql.json`), the
access token (`X-Shopify-Access-Token`), the document, parsed and validated with graphql-core
against `shopify_admin.graphql` (an excerpt of Shopify's schema: a misspelt field, argument or
enum value is an error), and the variables, coerced by executing against the same schema. It
keeps orders with their fulfillment orders, holds (ours and other apps'), tags and cancellation,
answers in the documented shapes (`userErrors` with field/message/code, `THROTTLED` with
`extensions.cost`, 401 for a bad token, a scripted 429 with Retry-After or 5xx, a delay), runs
a cost bucket (maximum, restore rate, 10 points per mutation; queries costed from their
selection, the unused part refunded as Shopify does) and records every mutation by order.

    with ShopifyStandIn(token="shpat_x") as shop:
        gid = shop.add_order(1001)
        ShopifyConnector(shop.url, "shpat_x").perform(StoreActionKind.HOLD, ...)
        assert shop.mutation_count("fulfillmentOrderHold", gid) == 1

As a process for the local stack: `python -m devstack.stores.shopify --port N` (orders are
created when first named; one line per mutation on stdout; `GET /_standin/counts` answers the
mutations received by order and the THROTTLED answers, for a harness such as a chaos run).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from graphql import (
    FieldNode,
    GraphQLError,
    OperationDefinitionNode,
    OperationType,
    build_schema,
    execute,
    parse,
    validate,
)
from graphql.language import IntValueNode, VariableNode

from devstack import http_server

HOST = "127.0.0.1"
SCHEMA_PATH = Path(__file__).with_name("shopify_admin.graphql")
DEFAULT_TOKEN = "shpat_local_standin"
DEFAULT_VERSION = "2025-10"
OUR_APP = "age-verification"
COUNTS_PATH = "/_standin/counts"
INVALID_TOKEN = "[API] Invalid API key or access token (unrecognized login or wrong password)"


@dataclass
class Hold:
    id: str
    app: str
    handle: str
    reason: str
    reason_notes: str | None


@dataclass
class FulfillmentOrder:
    id: str
    order: str
    status: str = "OPEN"
    holds: list[Hold] = field(default_factory=list)


@dataclass
class Order:
    id: str
    name: str
    cancelled_at: str | None = None
    tags: list[str] = field(default_factory=list)
    fulfillment_orders: list[FulfillmentOrder] = field(default_factory=list)
    cancel: dict[str, Any] | None = None  # the orderCancel arguments that cancelled it


@dataclass(frozen=True)
class Mutation:
    """One mutation the stand-in executed: its root field, the order it touched, its variables,
    and when it was received (wall clock, so a harness in another process can time it)."""

    name: str
    order: str | None
    variables: dict[str, Any]
    at: float = field(default_factory=time.time)


@dataclass
class _Scripted:
    status: int
    retry_after: float | None
    times: int


class ShopifyStandIn:
    """The server and its state. `start()` / `stop()` or a `with` block; `url` is the endpoint."""

    def __init__(self, *, token: str = DEFAULT_TOKEN, api_version: str = DEFAULT_VERSION,
                 max_available: float = 1000.0, restore_rate: float = 100.0, mutation_cost: float = 10.0,
                 delay: float = 0.0, auto_create: bool = False, port: int = 0,
                 on_mutation: Callable[[Mutation], None] | None = None) -> None:
        self.token = token
        self.api_version = api_version
        self.mutation_cost = mutation_cost
        self.delay = delay
        self.auto_create = auto_create
        self.on_mutation = on_mutation
        self._port = port
        self._schema = build_schema(SCHEMA_PATH.read_text(encoding="utf-8"))
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self.orders: dict[str, Order] = {}
        self._fulfillment_orders: dict[str, FulfillmentOrder] = {}
        self.mutations: list[Mutation] = []
        self.requests = 0
        self.throttled = 0  # THROTTLED answers: a client that paces itself never sees one
        self.invalid = 0  # documents or variables refused by the schema
        self.unauthorized = 0
        self.max_cost_seen = 0.0
        self.charged = 0.0  # points the bucket paid for answered requests (mutations and queries)
        self.lowest_available = float(max_available)
        self._scripted: list[_Scripted] = []
        self._user_errors: dict[str, list[str]] = {}
        self._lost_answers: dict[str, list[float]] = {}
        self.set_bucket(max_available, restore_rate)
        self._server: http_server.StandInServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ----

    def start(self) -> ShopifyStandIn:
        stand_in = self

        class Handler(_Handler):
            shop = stand_in

        self._server = http_server.StandInServer((HOST, self._port), Handler)
        self._thread = http_server.serve(self._server, "shopify-standin")
        return self

    def stop(self) -> None:
        if self._server is not None:
            http_server.stop(self._server, self._thread)
            self._server = None

    def __enter__(self) -> ShopifyStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the stand-in first"
        return self._server.server_address[1]

    @property
    def path(self) -> str:
        return f"/admin/api/{self.api_version}/graphql.json"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}{self.path}"

    # ---- state a test arranges and reads ----

    def add_order(self, order_id: int | str, *, fulfillment_orders: int = 1, status: str = "OPEN",
                  cancelled: bool = False) -> str:
        """An order with `fulfillment_orders` fulfillment orders in `status`; its GID."""
        with self._lock:
            gid = f"gid://shopify/Order/{order_id}"
            order = Order(gid, f"#{order_id}", cancelled_at=_now() if cancelled else None)
            for _ in range(fulfillment_orders):
                fo = FulfillmentOrder(f"gid://shopify/FulfillmentOrder/{next(self._ids)}", gid, status)
                order.fulfillment_orders.append(fo)
                self._fulfillment_orders[fo.id] = fo
            self.orders[gid] = order
            return gid

    def add_foreign_hold(self, gid: str, index: int = 0, *, handle: str = "",
                         reason: str = "HIGH_RISK_OF_FRAUD", app: str = "fraud-filter") -> str:
        """Another app's hold on the order's `index`th fulfillment order; its id."""
        with self._lock:
            fo = self.orders[gid].fulfillment_orders[index]
            return self._place_hold(fo, app, handle, reason, None).id

    def holds(self, gid: str) -> list[Hold]:
        with self._lock:
            return [h for fo in self.orders[gid].fulfillment_orders for h in fo.holds]

    def mutation_count(self, name: str | None = None, order: str | None = None) -> int:
        with self._lock:
            return sum(1 for m in self.mutations
                       if (name is None or m.name == name) and (order is None or m.order == order))

    def counts(self) -> dict[str, Any]:
        """What a harness in another process reads (`GET /_standin/counts`): every mutation by
        name and order with its receive time (`at`, epoch seconds), and the THROTTLED, invalid and
        unauthorized answers."""
        with self._lock:
            return {"mutations": [{"name": m.name, "order": m.order, "at": m.at} for m in self.mutations],
                    "throttled": self.throttled, "invalid": self.invalid, "unauthorized": self.unauthorized,
                    "requests": self.requests, "charged": self.charged,
                    "bucket": {"max_available": self.max_available, "restore_rate": self.restore_rate,
                               "mutation_cost": self.mutation_cost}}

    def script(self, status: int, *, retry_after: float | None = None, times: int = 1) -> None:
        """Answer the next `times` requests with `status` (429 with `Retry-After`, 500, ...)."""
        with self._lock:
            self._scripted.append(_Scripted(status, retry_after, times))

    def user_error(self, mutation: str, code: str, *, times: int = 1) -> None:
        """The next `times` calls of `mutation` answer a user error with `code` (and change nothing)."""
        with self._lock:
            self._user_errors.setdefault(mutation, []).extend([code] * times)

    def lose_answer(self, mutation: str, seconds: float, *, times: int = 1) -> None:
        """The next `times` calls of `mutation` take effect, but their answer comes `seconds`
        late (after the client gave up): what a crash or a timeout after the call looks like."""
        with self._lock:
            self._lost_answers.setdefault(mutation, []).extend([seconds] * times)

    def set_bucket(self, max_available: float, restore_rate: float, available: float | None = None) -> None:
        with self._lock:
            self.max_available = float(max_available)
            self.restore_rate = float(restore_rate)
            self.available = float(max_available if available is None else available)
            self._refilled_at = time.monotonic()

    # ---- one request ----

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], Any]:
        """(status, headers, JSON body) for one POST."""
        if self.delay:
            time.sleep(self.delay)
        late: list[float] = []
        answer = self._answer(path, headers, body, late)
        if late:
            time.sleep(late[0])
        return answer

    def _answer(self, path: str, headers: dict[str, str], body: bytes,
                late: list[float]) -> tuple[int, dict[str, str], Any]:
        with self._lock:
            self.requests += 1
            if path != self.path:
                return 404, {}, {"errors": "Not Found"}
            scripted = self._next_scripted()
            if scripted is not None:
                extra = {} if scripted.retry_after is None else {"Retry-After": f"{scripted.retry_after:g}"}
                return scripted.status, extra, {"errors": "Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service."
                                                 if scripted.status == 429 else "Internal Server Error"}
            if headers.get("x-shopify-access-token") != self.token:
                self.unauthorized += 1
                return 401, {}, {"errors": INVALID_TOKEN}
            if (headers.get("content-type") or "").split(";")[0].strip() != "application/json":
                return 415, {}, {"errors": "Unsupported Media Type"}
            try:
                request = json.loads(body)
                query = request["query"]
                variables = request.get("variables") or {}
                if not isinstance(query, str) or not isinstance(variables, dict) or set(request) - {
                        "query", "variables", "operationName"}:
                    raise ValueError
            except (ValueError, KeyError, TypeError):
                return 400, {}, {"errors": {"query": "Required parameter missing or invalid"}}
            try:
                document = parse(query)
            except GraphQLError as exc:
                self.invalid += 1
                return 200, {}, {"errors": [_error(exc, "PARSE_ERROR")]}
            problems = validate(self._schema, document)
            if problems:
                self.invalid += 1
                return 200, {}, {"errors": [_error(p, "GRAPHQL_VALIDATION_FAILED") for p in problems]}
            operation = next(d for d in document.definitions if isinstance(d, OperationDefinitionNode))
            requested = self._cost(operation, None, variables)
            self.max_cost_seen = max(self.max_cost_seen, requested)
            self._refill()
            if requested > self.available:
                self.throttled += 1
                return 200, {}, {
                    "errors": [{"message": "Throttled", "extensions": {
                        "code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits"}}],
                    "extensions": {"cost": self._cost_extension(requested, None)},
                }
            self.available -= requested
            self.lowest_available = min(self.lowest_available, self.available)
            result = execute(self._schema, document, root_value=_Root(self), variable_values=variables,
                             operation_name=request.get("operationName"))
            if result.errors and result.data is None:
                self.invalid += 1
                self.available += requested  # refused before it ran: nothing charged
                return 200, {}, {"errors": [_error(e, "INVALID_VARIABLE") for e in result.errors]}
            for root in operation.selection_set.selections:
                pending = self._lost_answers.get(getattr(root, "name", None) and root.name.value) or []
                if pending:
                    late.append(pending.pop(0))
            actual = self._cost(operation, result.data, variables)
            self.charged += actual
            self.available = min(self.max_available, self.available + max(requested - actual, 0.0))
            answer: dict[str, Any] = {"data": result.data}
            if result.errors:
                answer["errors"] = [_error(e, "INTERNAL_SERVER_ERROR") for e in result.errors]
            answer["extensions"] = {"cost": self._cost_extension(requested, actual)}
            return 200, {}, answer

    def _next_scripted(self) -> _Scripted | None:
        if not self._scripted:
            return None
        scripted = self._scripted[0]
        scripted.times -= 1
        if scripted.times <= 0:
            self._scripted.pop(0)
        return scripted

    def _refill(self) -> None:
        now = time.monotonic()
        self.available = min(self.max_available, self.available + (now - self._refilled_at) * self.restore_rate)
        self._refilled_at = now

    def _cost_extension(self, requested: float, actual: float | None) -> dict[str, Any]:
        return {"requestedQueryCost": requested, "actualQueryCost": actual, "throttleStatus": {
            "maximumAvailable": self.max_available, "currentlyAvailable": round(self.available, 3),
            "restoreRate": self.restore_rate}}

    def _cost(self, operation: OperationDefinitionNode, data: Any, variables: dict[str, Any]) -> float:
        """Shopify's calculated cost, simplified: a mutation costs `mutation_cost`; in a query each
        object costs 1 and a connection 2 plus its nodes (`first` of them asked for; as many as
        came back when `data` is the answer)."""
        if operation.operation == OperationType.MUTATION:
            return self.mutation_cost * len(operation.selection_set.selections)
        return float(_selection_cost(operation.selection_set.selections, data, variables, data is None))

    # ---- resolvers (called under the lock, from execute) ----

    def _order(self, gid: str) -> Order | None:
        order = self.orders.get(gid)
        if order is None and self.auto_create and gid.startswith("gid://shopify/Order/"):
            self.add_order(gid.rsplit("/", 1)[1])
            order = self.orders[gid]
        return order

    def _record(self, name: str, order: str | None, variables: dict[str, Any]) -> None:
        mutation = Mutation(name, order, variables)
        self.mutations.append(mutation)
        if self.on_mutation is not None:
            self.on_mutation(mutation)

    def _scripted_user_error(self, name: str) -> str | None:
        codes = self._user_errors.get(name)
        return codes.pop(0) if codes else None

    def _place_hold(self, fo: FulfillmentOrder, app: str, handle: str, reason: str, notes: str | None) -> Hold:
        hold = Hold(f"gid://shopify/FulfillmentHold/{next(self._ids)}", app, handle, reason, notes)
        fo.holds.append(hold)
        fo.status = "ON_HOLD"
        return hold

    def resolve_hold(self, fo_id: str, hold: dict[str, Any]) -> dict[str, Any]:
        fo = self._fulfillment_orders.get(fo_id)
        self._record("fulfillmentOrderHold", fo.order if fo else None, {"id": fo_id, "fulfillmentHold": hold})
        code = self._scripted_user_error("fulfillmentOrderHold")
        if fo is None:
            code = code or "FULFILLMENT_ORDER_NOT_FOUND"
        elif not code and any(h.app == OUR_APP and h.handle == (hold.get("handle") or "") for h in fo.holds):
            code = "DUPLICATE_FULFILLMENT_HOLD_HANDLE"
        elif not code and sum(h.app == OUR_APP for h in fo.holds) >= 10:
            code = "FULFILLMENT_ORDER_HOLD_LIMIT_REACHED"
        elif not code and fo.status not in ("OPEN", "ON_HOLD", "SCHEDULED"):
            code = "FULFILLMENT_ORDER_NOT_FOUND"
        if code:
            return {"fulfillmentHold": None, "fulfillmentOrder": None, "remainingFulfillmentOrder": None,
                    "userErrors": [_user_error(code, ["id"], "The fulfillment order could not be held.")]}
        placed = self._place_hold(fo, OUR_APP, hold.get("handle") or "", hold["reason"], hold.get("reasonNotes"))
        return {"fulfillmentHold": _hold(placed), "fulfillmentOrder": _fulfillment_order(fo),
                "remainingFulfillmentOrder": None, "userErrors": []}

    def resolve_release(self, fo_id: str, hold_ids: list[str] | None) -> dict[str, Any]:
        fo = self._fulfillment_orders.get(fo_id)
        self._record("fulfillmentOrderReleaseHold", fo.order if fo else None, {"id": fo_id, "holdIds": hold_ids})
        code = self._scripted_user_error("fulfillmentOrderReleaseHold")
        if fo is None:
            code = code or "FULFILLMENT_ORDER_NOT_FOUND"
        if code:
            return {"fulfillmentOrder": None,
                    "userErrors": [_user_error(code, ["id"], "The fulfillment hold could not be released.")]}
        if hold_ids is None:  # Shopify's documented behaviour: every hold goes, other apps' too
            releasing = list(fo.holds)
        else:
            releasing = [h for h in fo.holds if h.id in hold_ids]
            if any(h.app != OUR_APP for h in releasing):
                return {"fulfillmentOrder": None,
                        "userErrors": [_user_error("INVALID_ACCESS", ["holdIds"], "Not your hold.")]}
        fo.holds = [h for h in fo.holds if h not in releasing]
        if not fo.holds and fo.status == "ON_HOLD":
            fo.status = "OPEN"
        return {"fulfillmentOrder": _fulfillment_order(fo), "userErrors": []}

    def resolve_cancel(self, args: dict[str, Any]) -> dict[str, Any]:
        order = self.orders.get(args["orderId"])
        self._record("orderCancel", args["orderId"], dict(args))
        code = self._scripted_user_error("orderCancel")
        if order is None:
            code = code or "NOT_FOUND"
        elif not code and order.cancelled_at:
            code = "INVALID"
        if code:
            error = _user_error(code, ["orderId"], "The order could not be cancelled.")
            return {"job": None, "orderCancelUserErrors": [error],
                    "userErrors": [{"field": error["field"], "message": error["message"]}]}
        order.cancelled_at = _now()
        order.cancel = dict(args)
        for fo in order.fulfillment_orders:
            fo.status = "CANCELLED"
        return {"job": {"id": f"gid://shopify/Job/{next(self._ids)}", "done": False},
                "orderCancelUserErrors": [], "userErrors": []}

    def resolve_tags_add(self, node_id: str, tags: list[str]) -> dict[str, Any]:
        order = self.orders.get(node_id)
        self._record("tagsAdd", node_id, {"id": node_id, "tags": list(tags)})
        code = self._scripted_user_error("tagsAdd")
        if order is None or code:
            return {"node": None, "userErrors": [{"field": ["id"], "message": "Order does not exist"}]}
        for tag in tags:
            for part in (t.strip() for t in tag.split(",")):
                if part and part not in order.tags:
                    order.tags.append(part)
        return {"node": _order(order), "userErrors": []}


class _Root:
    """Root resolvers: graphql-core's default resolver calls these with (info, **arguments)."""

    def __init__(self, shop: ShopifyStandIn) -> None:
        self._shop = shop

    def order(self, info, id: str) -> dict[str, Any] | None:  # noqa: A002 (the argument's name)
        order = self._shop._order(id)
        return None if order is None else _order(order)

    def fulfillmentOrderHold(self, info, fulfillmentHold: dict, id: str) -> dict:  # noqa: N802, A002
        return self._shop.resolve_hold(id, fulfillmentHold)

    def fulfillmentOrderReleaseHold(self, info, id: str, holdIds: list[str] | None = None,  # noqa: N802, A002
                                    externalId: str | None = None) -> dict:
        return self._shop.resolve_release(id, holdIds)

    def orderCancel(self, info, **args: Any) -> dict:  # noqa: N802
        return self._shop.resolve_cancel(args)

    def tagsAdd(self, info, id: str, tags: list[str]) -> dict:  # noqa: N802, A002
        return self._shop.resolve_tags_add(id, tags)


def _order(order: Order) -> dict[str, Any]:
    def fulfillment_orders(info, first: int | None = None, **_: Any) -> dict[str, Any]:
        nodes = [_fulfillment_order(fo) for fo in order.fulfillment_orders][: first or None]
        return {"nodes": nodes, "pageInfo": {"hasNextPage": first is not None and len(order.fulfillment_orders) > first,
                                             "hasPreviousPage": False, "endCursor": None, "startCursor": None}}
    return {"__typename": "Order", "id": order.id, "name": order.name, "cancelledAt": order.cancelled_at,
            "tags": list(order.tags), "fulfillmentOrders": fulfillment_orders}


def _fulfillment_order(fo: FulfillmentOrder) -> dict[str, Any]:
    return {"__typename": "FulfillmentOrder", "id": fo.id, "orderId": fo.order, "status": fo.status,
            "fulfillmentHolds": [_hold(h) for h in fo.holds]}


def _hold(hold: Hold) -> dict[str, Any]:
    return {"__typename": "FulfillmentHold", "id": hold.id, "handle": hold.handle,
            "heldByRequestingApp": hold.app == OUR_APP, "reason": hold.reason, "reasonNotes": hold.reason_notes,
            "displayReason": hold.reason.replace("_", " ").capitalize()}


def _user_error(code: str, field_path: list[str], message: str) -> dict[str, Any]:
    return {"field": field_path, "message": message, "code": code}


def _error(error: GraphQLError, code: str) -> dict[str, Any]:
    formatted = error.formatted
    formatted["extensions"] = {**(formatted.get("extensions") or {}), "code": code}
    return formatted


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _argument(node: FieldNode, name: str, variables: dict[str, Any]) -> int | None:
    for argument in node.arguments or ():
        if argument.name.value == name:
            if isinstance(argument.value, IntValueNode):
                return int(argument.value.value)
            if isinstance(argument.value, VariableNode):
                value = variables.get(argument.value.name.value)
                return value if isinstance(value, int) else None
    return None


def _selection_cost(selections, data: Any, variables: dict[str, Any], asked: bool) -> int:
    total = 0
    for node in selections:
        if not isinstance(node, FieldNode) or node.selection_set is None:
            continue
        key = node.alias.value if node.alias else node.name.value
        value = data.get(key) if isinstance(data, dict) else None
        first = _argument(node, "first", variables)
        if first is None:
            total += 1 + _selection_cost(node.selection_set.selections, value, variables, asked)
            continue
        total += 2
        for child in node.selection_set.selections:
            if not isinstance(child, FieldNode) or child.selection_set is None:
                continue
            if child.name.value not in ("nodes", "edges"):  # pageInfo: one object
                total += 1
                continue
            items = (value or {}).get(child.alias.value if child.alias else child.name.value) if not asked else None
            if asked:
                total += first * (1 + _selection_cost(child.selection_set.selections, None, variables, True))
            else:
                for item in items or []:
                    total += 1 + _selection_cost(child.selection_set.selections, item, variables, False)
    return total


class _Handler(BaseHTTPRequestHandler):
    shop: ShopifyStandIn
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            status, extra, answer = self.shop.handle(self.path, headers, body)
        except Exception as exc:  # the stand-in's own bug: say so as Shopify would, a 500
            status, extra, answer = 500, {}, {"errors": f"stand-in error: {type(exc).__name__}"}
        self._send(status, extra, answer)

    def do_GET(self) -> None:  # noqa: N802
        if self.path == COUNTS_PATH:  # the stand-in's own: for a harness outside this process
            self._send(200, {}, self.shop.counts())
            return
        self._send(405 if self.path == self.shop.path else 404, {}, {"errors": "Not Found"})

    def _send(self, status: int, extra: dict[str, str], answer: Any) -> None:
        payload = json.dumps(answer).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


def _story(mutation: Mutation) -> None:
    order = (mutation.order or "?").rsplit("/", 1)[-1]
    print(f"shopify stand-in: {mutation.name} order {order}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.stores.shopify", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default=DEFAULT_TOKEN)
    parser.add_argument("--api-version", default=DEFAULT_VERSION)
    parser.add_argument("--max-available", type=float, default=1000.0)
    parser.add_argument("--restore-rate", type=float, default=100.0)
    parser.add_argument("--mutation-cost", type=float, default=10.0)
    parser.add_argument("--quiet", action="store_true", help="no line per mutation (a harness reads the counts)")
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args(argv)
    shop = ShopifyStandIn(token=args.token, api_version=args.api_version, max_available=args.max_available,
                          restore_rate=args.restore_rate, mutation_cost=args.mutation_cost, delay=args.delay,
                          auto_create=True, port=args.port, on_mutation=None if args.quiet else _story)
    shop.start()
    print(f"shopify stand-in: listening on {shop.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        shop.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
