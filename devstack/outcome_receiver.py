"""A strict receiver of the service's outcome webhooks (DESIGN.md 4b), for tests and the local stack.

It checks every call as a store's receiver must: POST, JSON, a Standard Webhooks signature
(`webhook-id`, `webhook-timestamp` within 5 minutes, `v1,` HMAC-SHA256 with the shared
`whsec_` secret), and a body of exactly `{"type", "orderId", "source", "occurredAt"}` with a
known type and no customer data. A call that fails a check is answered 400/401 and kept in
`rejected`; a good one is recorded by order (`calls`), de-duplicated on `webhook-id`
(`deliveries` counts repeats) and answered 204, unless a scripted failure is queued
(`fail_next(status, retry_after=...)`).

    with OutcomeReceiver(secret) as receiver:         # tests
        ... OUTCOME_WEBHOOK_URL=receiver.url ...
        assert receiver.types("order-1") == ["order.held", "order.verified"]

    python -m devstack.outcome_receiver --port 9199 --secret whsec_...   # the local stack

`GET /calls` answers what was recorded, as JSON (for a person, or an end-to-end test).
Production code never imports this module.
"""

from __future__ import annotations

import argparse
import base64
import json
import threading
from collections import defaultdict
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler

from devstack import http_server
from shared.errors import BadSignature
from shared.inbound.orders import verify_standard_webhook

TYPES = frozenset({"order.held", "order.verified", "order.expired", "order.declined", "order.cancelled",
                   "order.in_review"})
FIELDS = frozenset({"type", "orderId", "source", "occurredAt"})
HOST = "127.0.0.1"


def secret_bytes(secret: str | bytes) -> bytes:
    if isinstance(secret, bytes):
        return secret
    return base64.b64decode(secret.removeprefix("whsec_"))


class OutcomeReceiver:
    def __init__(self, secret: str | bytes, port: int = 0, path: str = "/outcomes") -> None:
        self.key = secret_bytes(secret)
        self.path = path
        self.calls: dict[str, list[dict]] = defaultdict(list)  # orderId -> each distinct webhook, in order
        self.deliveries: dict[str, int] = defaultdict(int)  # webhook-id -> how many times it came
        self.rejected: list[tuple[int, str]] = []
        self._failures: list[tuple[int, float | None]] = []
        self._lock = threading.Lock()
        self._server = http_server.StandInServer((HOST, port), self._handler())
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self._server.server_address[1]}{self.path}"

    def fail_next(self, status: int, *, times: int = 1, retry_after: float | None = None) -> None:
        with self._lock:
            self._failures += [(status, retry_after)] * times

    def types(self, order_id: str) -> list[str]:
        with self._lock:
            return [call["type"] for call in self.calls.get(order_id, [])]

    def start(self) -> OutcomeReceiver:
        self._thread = http_server.serve(self._server, "outcome-receiver")
        return self

    def stop(self) -> None:
        http_server.stop(self._server, self._thread)

    def __enter__(self) -> OutcomeReceiver:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _receive(self, path: str, headers, body: bytes) -> tuple[int, dict[str, str]]:
        if path != self.path:
            return self._reject(404, "path")
        if (headers.get("content-type") or "").split(";")[0].strip() != "application/json":
            return self._reject(400, "content-type")
        try:
            msg_id = verify_standard_webhook(self.key, headers, body, datetime.now(timezone.utc))
        except BadSignature:
            return self._reject(401, "signature")
        try:
            data = json.loads(body)
        except ValueError:
            return self._reject(400, "json")
        if not isinstance(data, dict) or set(data) != FIELDS or data["type"] not in TYPES:
            return self._reject(400, "body")
        if not all(isinstance(data[k], str) and data[k] for k in FIELDS):
            return self._reject(400, "body")
        try:
            datetime.fromisoformat(data["occurredAt"].replace("Z", "+00:00"))
        except ValueError:
            return self._reject(400, "occurredAt")
        with self._lock:
            if self._failures:
                status, retry_after = self._failures.pop(0)
                return status, ({"Retry-After": str(int(retry_after))} if retry_after is not None else {})
            self.deliveries[msg_id] += 1
            if self.deliveries[msg_id] == 1:
                self.calls[data["orderId"]].append({**data, "webhook_id": msg_id})
        return 204, {}

    def _reject(self, status: int, why: str) -> tuple[int, dict[str, str]]:
        with self._lock:
            self.rejected.append((status, why))
        return status, {}

    def snapshot(self) -> dict:
        with self._lock:
            return {"calls": {k: list(v) for k, v in self.calls.items()},
                    "deliveries": dict(self.deliveries), "rejected": list(self.rejected)}

    def _handler(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, extra = receiver._receive(self.path, headers, body)
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("content-length", "0")
                self.end_headers()

            def do_GET(self) -> None:  # noqa: N802
                if self.path != "/calls":
                    self.send_response(404)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                body = json.dumps(receiver.snapshot()).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format, *args) -> None:  # noqa: A002
                pass

        return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret", required=True, help="the whsec_ secret (OUTCOME_WEBHOOK_SECRET)")
    args = parser.parse_args(argv)
    receiver = OutcomeReceiver(args.secret, port=args.port)
    print(f"outcome webhook receiver on {receiver.url}", flush=True)
    try:
        receiver._server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
