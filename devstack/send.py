"""Send a signed webhook to the local stack.

    python -m devstack.send order ORDER-ID EMAIL
    python -m devstack.send veriff ORDER-ID approved|declined|resubmission|expired|review [BIRTH-DATE]
    python -m devstack.send event ORDER-ID started|submitted     (Veriff event webhook)
    python -m devstack.send sale SALE-ID EMAIL [STATUS]   (Lightspeed sale, CLOSED unless given)
    python -m devstack.send void ORDER-ID          (Lightspeed voided sale)

Veriff webhooks carry the session id the local stack created for the order.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from datetime import datetime, timezone

from devstack.run import LOCAL
from devstack.signing import (
    ADULT_BIRTH_DATE,
    lightspeed_body,
    lightspeed_headers,
    lightspeed_sale,
    order_body,
    standard_webhook_headers,
    veriff_body,
    veriff_event_body,
    veriff_headers,
)

CODES = {"approved": 9001, "declined": 9102, "resubmission": 9103, "expired": 9104, "review": 9121}
EVENT_CODES = {"started": 7001, "submitted": 7002}


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


COMMANDS = {"order": _order, "veriff": _decision, "event": _event, "sale": _sale, "void": _void}


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        return 2
    secrets = json.loads((LOCAL / "dev-secrets.json").read_text())
    base = f"http://127.0.0.1:{os.environ.get('LOCAL_BASE_PORT', '8080')}"
    path, body, headers = COMMANDS[argv[0]](secrets, *argv[1:])
    request = urllib.request.Request(base + path, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            print(response.status, response.read().decode())
    except urllib.error.HTTPError as exc:
        print(exc.code, exc.read().decode())
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
