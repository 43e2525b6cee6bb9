"""Send a signed webhook to the local stack.

    python -m devstack.send order ORDER-ID EMAIL
    python -m devstack.send veriff ORDER-ID approved|declined|resubmission|expired|review [BIRTH-DATE]
    python -m devstack.send event ORDER-ID started|submitted     (Veriff event webhook)
    python -m devstack.send sale SALE-ID EMAIL [STATUS]   (Lightspeed sale, CLOSED unless given)
    python -m devstack.send void ORDER-ID          (Lightspeed voided sale)
    python -m devstack.send shopify ORDER-NUMBER EMAIL   (Shopify orders/paid; session shopify:ORDER-NUMBER)
    python -m devstack.send shopify-cancel ORDER-NUMBER  (Shopify orders/cancelled)
    python -m devstack.send woocommerce ORDER-ID EMAIL [STATUS]   (WooCommerce order.created, processing unless given)
    python -m devstack.send woocommerce-cancel ORDER-ID           (WooCommerce order.updated, cancelled)

Veriff webhooks carry the session id the local stack created for the order. It posts to the
running stack's intake, as the run command left it in `.local/stack.env` (LOCAL_BASE_PORT in
this shell overrides it).
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import urllib.error
import urllib.request
from datetime import datetime, timezone

from devstack.run import LOCAL
from shared.operator import read_stack_env
from devstack.signing import (
    ADULT_BIRTH_DATE,
    lightspeed_body,
    lightspeed_headers,
    lightspeed_sale,
    SHOPIFY_SHOP_DOMAIN,
    order_body,
    shopify_headers,
    shopify_order,
    standard_webhook_headers,
    veriff_body,
    veriff_event_body,
    veriff_headers,
    woocommerce_body,
    woocommerce_headers,
    woocommerce_order,
)

CODES = {"approved": 9001, "declined": 9102, "resubmission": 9103, "expired": 9104, "review": 9121}
EVENT_CODES = {"started": 7001, "submitted": 7002}
WOOCOMMERCE_STATUSES = ("processing", "completed", "pending", "on-hold", "failed", "cancelled", "refunded")


def _order(secrets: dict, order_id: str, email: str = "customer@example.com") -> tuple[str, bytes, dict]:
    body = order_body(order_id, email)
    return "/webhooks/orders", body, standard_webhook_headers(secrets["ORDER_WEBHOOK_SECRET"], body)


def _decision(secrets: dict, order_id: str, outcome: str = "approved",
              birth_date: str = ADULT_BIRTH_DATE) -> tuple[str, bytes, dict]:
    body = veriff_body(order_id, CODES[outcome], date_of_birth=birth_date,
                       decision_time=f"{datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%S.%f}Z")
    return "/webhooks/veriff", body, veriff_headers(secrets["VERIFF_SHARED_SECRET"], secrets["VERIFF_API_KEY"], body)


def _event(secrets: dict, order_id: str, action: str = "submitted") -> tuple[str, bytes, dict]:
    body = veriff_event_body(order_id, EVENT_CODES[action])
    return "/webhooks/veriff", body, veriff_headers(secrets["VERIFF_SHARED_SECRET"], secrets["VERIFF_API_KEY"], body)


def _sale(secrets: dict, sale_id: str, email: str = "customer@example.com",
          status: str = "CLOSED") -> tuple[str, bytes, dict]:
    body = lightspeed_body(lightspeed_sale(sale_id, status, email=email))
    return "/webhooks/lightspeed", body, lightspeed_headers(secrets["LIGHTSPEED_CLIENT_SECRET"], body)


def _void(secrets: dict, sale_id: str) -> tuple[str, bytes, dict]:
    return _sale(secrets, sale_id, status="VOIDED")


def _shopify(secrets: dict, order_number: str, email: str = "customer@example.com", *,
             topic: str = "orders/paid") -> tuple[str, bytes, dict]:
    body = json.dumps(shopify_order(int(order_number), email, cancelled=topic == "orders/cancelled")).encode()
    shop = secrets.get("SHOPIFY_SHOP_DOMAIN", SHOPIFY_SHOP_DOMAIN)
    secret = secrets["SHOPIFY_CLIENT_SECRET"].split(",")[0]
    return "/webhooks/shopify", body, shopify_headers(secret, body, topic, shop_domain=shop)


def _shopify_cancel(secrets: dict, order_number: str) -> tuple[str, bytes, dict]:
    return _shopify(secrets, order_number, topic="orders/cancelled")


def _woocommerce(secrets: dict, order_id: str, email: str = "customer@example.com",
                 status: str = "processing", topic: str = "order.created") -> tuple[str, bytes, dict]:
    secret = secrets.get("WOOCOMMERCE_WEBHOOK_SECRET")
    if not secret:
        raise SystemExit("devstack.send: no WOOCOMMERCE_WEBHOOK_SECRET in the dev secrets: "
                         "restart the stack (scripts/run-local.sh) to add it")
    body = woocommerce_body(woocommerce_order(int(order_id), status, email=email))
    headers = woocommerce_headers(secret, body, topic)
    return "/webhooks/woocommerce", body, headers


def _woocommerce_cancel(secrets: dict, order_id: str) -> tuple[str, bytes, dict]:
    return _woocommerce(secrets, order_id, status="cancelled", topic="order.updated")


COMMANDS = {"order": _order, "veriff": _decision, "event": _event, "sale": _sale, "void": _void,
            "shopify": _shopify, "shopify-cancel": _shopify_cancel,
            "woocommerce": _woocommerce, "woocommerce-cancel": _woocommerce_cancel}


USAGE = ("usage: python -m devstack.send order ID EMAIL | veriff ID " + "|".join(CODES) + " [BIRTH-DATE]"
         " | event ID " + "|".join(EVENT_CODES) + " | sale ID EMAIL [STATUS] | void ID"
         " | shopify NUMBER EMAIL | shopify-cancel NUMBER"
         " | woocommerce ID EMAIL [STATUS] | woocommerce-cancel ID   (--help for more)")


def intake_url() -> str:
    """The running stack's intake: this shell's LOCAL_BASE_PORT, else what the run command wrote."""
    if os.environ.get("LOCAL_BASE_PORT"):
        return f"http://127.0.0.1:{os.environ['LOCAL_BASE_PORT']}"
    return read_stack_env(LOCAL / "stack.env").get("LOCAL_INTAKE_URL", "http://127.0.0.1:8080").rstrip("/")


def _fits(command, args: list[str]) -> bool:
    """`args` fill the command's parameters after the secrets, and name known outcomes."""
    try:
        inspect.signature(command).bind({}, *args)
    except TypeError:
        return False
    if command in (_woocommerce, _woocommerce_cancel):  # a WooCommerce order id is a number
        return (bool(args) and args[0].isascii() and args[0].isdigit() and len(args) <= 3
                and (len(args) < 3 or args[2] in WOOCOMMERCE_STATUSES))
    if command is _decision and len(args) > 1 and args[1] not in CODES:
        return False
    if command in (_shopify, _shopify_cancel) and not (args[0].isascii() and args[0].isdigit()):
        return False  # Shopify's order ids are numbers
    return not (command is _event and len(args) > 1 and args[1] not in EVENT_CODES)


def main(argv: list[str]) -> int:
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    command = COMMANDS.get(argv[0]) if argv else None
    if command is None or not _fits(command, argv[1:]):
        print(USAGE, file=sys.stderr)
        return 2
    secrets_file = LOCAL / "dev-secrets.json"
    if not secrets_file.exists():
        print(f"devstack.send: no {secrets_file}: start the stack first (scripts/run-local.sh)", file=sys.stderr)
        return 1
    base = intake_url()
    secrets = json.loads(secrets_file.read_text())
    if command in (_shopify, _shopify_cancel) and "SHOPIFY_CLIENT_SECRET" not in secrets:
        print(f"devstack.send: no SHOPIFY_CLIENT_SECRET in {secrets_file}: restart the stack once "
              "(scripts/run-local.sh adds it)", file=sys.stderr)
        return 1
    path, body, headers = command(secrets, *argv[1:])
    request = urllib.request.Request(base + path, data=body, headers=headers, method="POST")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1 never goes via a proxy
    try:
        with opener.open(request, timeout=10) as response:
            print(response.status, response.read().decode())
    except urllib.error.HTTPError as exc:
        print(exc.code, exc.read().decode())
        return 1
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, ConnectionRefusedError):
            print(f"devstack.send: the local stack is not running (nothing answers at {base}); "
                  "start it with scripts/run-local.sh", file=sys.stderr)
        else:
            print(f"devstack.send: {base} did not answer: {type(reason).__name__}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
