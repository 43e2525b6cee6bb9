"""Sign webhook bodies the way each sender does (for the local stack's examples and the bench)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from datetime import datetime, timezone
from urllib.parse import urlencode

from shared.providers.veriff.adapter import LocalVerificationProvider
from shared.providers.veriff.inbound import veriff_signature


def standard_webhook_headers(secret: str, body: bytes, msg_id: str | None = None,
                             timestamp: int | None = None) -> dict[str, str]:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    timestamp = int(time.time()) if timestamp is None else timestamp
    signed = f"{msg_id}.{timestamp}.".encode() + body
    signature = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": f"v1,{signature}",
        "Content-Type": "application/json",
    }


def veriff_headers(shared_secret: str, api_key: str, body: bytes) -> dict[str, str]:
    return {
        "X-HMAC-SIGNATURE": veriff_signature(shared_secret, body),
        "X-AUTH-CLIENT": api_key,
        "Content-Type": "application/json",
    }


def lightspeed_headers(client_secret: str, body: bytes) -> dict[str, str]:
    digest = hmac.new(client_secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "X-Signature": f"signature={digest}, algorithm=HMAC-SHA256",
        "Content-Type": "application/x-www-form-urlencoded",
    }


def order_body(order_id: str, email: str = "customer@example.com", **extra) -> bytes:
    return json.dumps({"event": "order.created", "orderId": order_id, "customerEmail": email,
                       **extra}).encode()


ADULT_BIRTH_DATE = "1990-01-01"
_STATUSES = {9001: "approved", 9102: "declined", 9103: "resubmission_requested",
             9104: "expired", 9121: "review"}
_EVENT_ACTIONS = {7001: "started", 7002: "submitted"}


def local_session_id(order_id: str) -> str:
    """The provider session id the local stack creates for an order (the local Veriff stand-in)."""
    return LocalVerificationProvider("http://127.0.0.1").create_session(order_id).session_id


def veriff_body(order_id: str, code: int, *, verification_id: str | None = None,
                decision_time: str | None = "2026-11-29T10:00:00.000Z", status: str | None = None,
                date_of_birth: str | None = ADULT_BIRTH_DATE) -> bytes:
    """A decision webhook shaped like Veriff's; an approval carries `person.dateOfBirth`."""
    verification = {
        "id": verification_id or local_session_id(order_id), "code": code,
        "status": status or _STATUSES.get(code, "unknown"), "vendorData": order_id,
        "reason": None, "reasonCode": None, "decisionTime": decision_time,
        "acceptanceTime": "2026-11-29T09:55:00.000Z", "endUserId": None,
        "document": {"type": "DRIVERS_LICENSE", "country": "US"}, "comments": [],
    }
    if code == 9001:
        verification["person"] = {"firstName": "SARAH", "lastName": "MORGAN", "gender": None,
                                  "dateOfBirth": date_of_birth, "yearOfBirth": str(date_of_birth)[:4] if date_of_birth else None}
    return json.dumps({"status": "success", "verification": verification,
                       "technicalData": {"ip": "192.0.2.1"}}).encode()


def veriff_event_body(order_id: str, code: int, *, verification_id: str | None = None,
                      attempt_id: str | None = None) -> bytes:
    """An event webhook shaped like Veriff's (7001 started, 7002 submitted)."""
    return json.dumps({
        "id": verification_id or local_session_id(order_id),
        "attemptId": attempt_id or str(uuid.uuid4()), "feature": "selfid", "code": code,
        "action": _EVENT_ACTIONS.get(code, "unknown"), "vendorData": order_id, "endUserId": None,
    }).encode()


def lightspeed_sale(sale_id: str, status: str = "CLOSED", *, email: str | None = "buyer@example.com",
                    total: str = "877.40000", return_for: str | None = None,
                    sale_date: str | None = None, version: int | None = None,
                    customer_id: str | None = None) -> dict:
    """A `sale.update` payload shaped like X-Series sends it (prices as 5-decimal strings,
    dates as `2019-07-26 17:31:40`; the sale date is now unless given). Each sale is a new
    customer account unless `customer_id` names one (verify once matches account and email)."""
    sale_date = sale_date or f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S}"
    customer_id = customer_id or str(uuid.uuid4())
    return {
        "id": sale_id, "status": status, "return_for": return_for, "sale_date": sale_date,
        "created_at": sale_date, "updated_at": sale_date.replace(" ", "T") + "+00:00",
        "version": version if version is not None else uuid.uuid4().int % 10**9,
        "customer_id": customer_id, "invoice_number": "12",
        "customer": {"id": customer_id, "email": email,
                     "customer_code": "WALKIN" if email is None else "Buyer-1", "date_of_birth": None},
        "register_sale_products": [{"price": "69.90000", "quantity": 1, "is_return": return_for is not None}],
        "totals": {"total_price": total, "total_tax": "0.00000", "total_payment": total,
                   "total_to_pay": "0.00000", "total_loyalty": "0.00000"},
    }


def lightspeed_body(sale: dict, *, type_: str | None = "sale.update") -> bytes:
    """The form body: `payload` (the sale as JSON) and, when given, `type`."""
    fields = {"domain_prefix": "teststore", "environment": "prod", "payload": json.dumps(sale)}
    if type_ is not None:
        fields["type"] = type_
    return urlencode(fields).encode()


def woocommerce_order(order_id: int, status: str = "processing", *, email: str | None = "buyer@example.com",
                      customer_id: int = 0, total: str = "29.35", currency: str = "USD",
                      created_gmt: str | None = None) -> dict:
    """An order as WooCommerce's REST API v3 shows it, which is what its order webhooks carry
    (money as 2-decimal strings, `date_created_gmt` in UTC without an offset, `customer_id` 0 for
    a guest; the order is made now unless given)."""
    created_gmt = created_gmt or f"{datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%S}"
    return {
        "id": order_id, "parent_id": 0, "number": str(order_id), "order_key": f"wc_order_{uuid.uuid4().hex[:13]}",
        "created_via": "checkout", "version": "9.4.2", "status": status, "currency": currency,
        "date_created": created_gmt, "date_created_gmt": created_gmt,
        "date_modified": created_gmt, "date_modified_gmt": created_gmt,
        "discount_total": "0.00", "discount_tax": "0.00", "shipping_total": "10.00", "shipping_tax": "0.00",
        "cart_tax": "1.35", "total": total, "total_tax": "1.35", "prices_include_tax": False,
        "customer_id": customer_id, "customer_ip_address": "", "customer_user_agent": "", "customer_note": "",
        "billing": {"first_name": "Sam", "last_name": "Buyer", "company": "", "address_1": "1 Main St",
                    "address_2": "", "city": "Springfield", "state": "CA", "postcode": "94103", "country": "US",
                    "email": email, "phone": "(555) 555-0100"},
        "shipping": {"first_name": "Sam", "last_name": "Buyer", "company": "", "address_1": "1 Main St",
                     "address_2": "", "city": "Springfield", "state": "CA", "postcode": "94103", "country": "US"},
        "payment_method": "stripe", "payment_method_title": "Credit card", "transaction_id": "",
        "date_paid": created_gmt, "date_paid_gmt": created_gmt, "date_completed": None, "date_completed_gmt": None,
        "cart_hash": "", "meta_data": [],
        "line_items": [{"id": 1, "name": "Bourbon 70cl", "product_id": 93, "variation_id": 0, "quantity": 1,
                        "tax_class": "", "subtotal": "18.00", "subtotal_tax": "1.35", "total": "18.00",
                        "total_tax": "1.35", "taxes": [], "meta_data": [], "sku": "", "price": 18}],
        "tax_lines": [], "shipping_lines": [], "fee_lines": [], "coupon_lines": [], "refunds": [],
        "_links": {"self": [{"href": f"https://shop.example.com/wp-json/wc/v3/orders/{order_id}"}]},
    }


def woocommerce_body(order: dict) -> bytes:
    """The body as WooCommerce sends it: `wp_json_encode` output (compact, `/` escaped as `\\/`)."""
    return json.dumps(order, separators=(",", ":")).replace("/", "\\/").encode()


def woocommerce_headers(secret: str, body: bytes, topic: str = "order.created", *,
                        delivery_id: str | None = None, webhook_id: int = 3) -> dict[str, str]:
    """The headers `WC_Webhook::deliver()` sends, signed with the webhook's secret."""
    resource, _, event = topic.partition(".")
    return {
        "Content-Type": "application/json",
        "User-Agent": "WooCommerce/9.4.2 Hookshot (WordPress/6.7.1)",
        "X-WC-Webhook-Source": "https://shop.example.com/",
        "X-WC-Webhook-Topic": topic,
        "X-WC-Webhook-Resource": resource,
        "X-WC-Webhook-Event": event,
        "X-WC-Webhook-Signature": base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode(),
        "X-WC-Webhook-ID": str(webhook_id),
        "X-WC-Webhook-Delivery-ID": delivery_id or uuid.uuid4().hex,
    }


def woocommerce_ping(webhook_id: int = 3) -> tuple[bytes, dict[str, str]]:
    """The ping `WC_Webhook::deliver_ping()` posts when a webhook is created: a form body, no
    `X-WC-Webhook-*` header, no signature."""
    return f"webhook_id={webhook_id}".encode(), {
        "Content-Type": "application/x-www-form-urlencoded",
        "User-Agent": "WooCommerce/9.4.2 Hookshot (WordPress/6.7.1)",
    }


SHOPIFY_SHOP_DOMAIN = "age-verify-dev.myshopify.com"


def shopify_order(order_id: int, email: str | None = "customer@example.com", *,
                  financial_status: str = "paid", test: bool = False, total: str = "64.90",
                  created_at: str | None = None, cancelled: bool = False) -> dict:
    """An order webhook body in Shopify's Admin REST order shape (the fields the service reads,
    and enough of the others to look like one): exact 64-bit ids, prices as strings, ISO times
    with the shop's offset, the GraphQL id beside the numeric one."""
    created_at = created_at or datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")
    customer_id = 7_009_001_000_000 + order_id % 1_000_000
    return {
        "id": order_id, "admin_graphql_api_id": f"gid://shopify/Order/{order_id}",
        "name": f"#{1000 + order_id % 9000}", "order_number": 1000 + order_id % 9000,
        "email": email, "contact_email": email, "phone": None,
        "created_at": created_at, "updated_at": created_at, "processed_at": created_at,
        "cancelled_at": created_at if cancelled else None, "cancel_reason": "other" if cancelled else None,
        "closed_at": None, "confirmed": True, "test": test,
        "financial_status": "refunded" if cancelled else financial_status, "fulfillment_status": None,
        "currency": "USD", "presentment_currency": "USD",
        "total_price": total, "subtotal_price": total, "total_tax": "0.00", "total_discounts": "0.00",
        "total_price_set": {"shop_money": {"amount": total, "currency_code": "USD"},
                            "presentment_money": {"amount": total, "currency_code": "USD"}},
        "tags": "", "note": None, "source_name": "web", "payment_gateway_names": ["shopify_payments"],
        "customer": None if email is None else {
            "id": customer_id, "admin_graphql_api_id": f"gid://shopify/Customer/{customer_id}",
            "email": email, "first_name": "Sam", "last_name": "Buyer", "state": "enabled",
            "verified_email": True, "currency": "USD"},
        "line_items": [{"id": order_id * 10 + 1, "admin_graphql_api_id": f"gid://shopify/LineItem/{order_id * 10 + 1}",
                        "title": "Aged Rum 70cl", "quantity": 1, "price": total, "requires_shipping": True,
                        "fulfillable_quantity": 1, "fulfillment_status": None, "sku": "RUM-70"}],
        "refunds": [], "fulfillments": [],
    }


def shopify_headers(client_secret: str, body: bytes, topic: str = "orders/paid", *,
                    shop_domain: str = SHOPIFY_SHOP_DOMAIN, webhook_id: str | None = None,
                    api_version: str = "2025-10") -> dict[str, str]:
    """The headers Shopify sends with a webhook, signed over the exact body."""
    return {
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": base64.b64encode(hmac.new(client_secret.encode(), body, hashlib.sha256).digest()).decode(),
        "X-Shopify-Shop-Domain": shop_domain,
        "X-Shopify-API-Version": api_version,
        "X-Shopify-Webhook-Id": webhook_id or str(uuid.uuid4()),
        "X-Shopify-Event-Id": str(uuid.uuid4()),
        "X-Shopify-Triggered-At": f"{datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%S.%fZ}",
        "Content-Type": "application/json",
    }
