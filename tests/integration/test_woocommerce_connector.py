"""The WooCommerce connector against the strict stand-in of its REST API v3 (issue 21 section 4).

Each action, what a retry after a crash does (never a second refund), the refund amount (what
is left, never more), and how each store answer maps to StoreRefused / StoreUnavailable. The
stand-in (devstack.stores.woocommerce) checks Basic auth and every body, and counts what it
receives per order."""

from __future__ import annotations

import base64
from decimal import Decimal

import pytest
import requests

from devstack.stores.woocommerce import API, WooCommerceStandIn
from shared.config import StoreSettings, WooCommerceSettings
from shared.errors import ConfigError
from shared.stores.base import ORDER_ACTIONS, ActionResult, StoreActionKind, StoreOrder, StoreRefused, StoreUnavailable
from shared.stores.woocommerce import (
    DEFAULT_TIMEOUT,
    HOLD_NOTE,
    REFUND_MARK,
    RELEASE_NOTE,
    REVIEW_NOTE,
    WooCommerceConnector,
)
from tests.fakes import refused_url

HOLD, RELEASE = StoreActionKind.HOLD, StoreActionKind.RELEASE
CANCEL, FLAG = StoreActionKind.CANCEL_AND_REFUND, StoreActionKind.FLAG_FOR_REVIEW
WRITES = ("update_order", "create_note", "create_refund")


@pytest.fixture(autouse=True)
def no_proxies(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def store():
    with WooCommerceStandIn("ck_test", "cs_test") as standin:
        yield standin


@pytest.fixture
def connector(store):
    return WooCommerceConnector(store.url, "ck_test", "cs_test")


def order(order_id: int, reason: str | None = None) -> StoreOrder:
    return StoreOrder(key=f"woocommerce:{order_id}", source="woocommerce", store_ref=str(order_id), reason=reason)


def writes(store, order_id: int) -> list[tuple[str, object]]:
    return [(c.kind, c.body) for c in store.calls_for(order_id) if c.kind in WRITES and c.status < 300]


# ---- hold -----------------------------------------------------------------------------------


def test_hold_puts_the_order_on_hold_with_a_note_once(store, connector):
    store.add_order(727)
    assert connector.perform(HOLD, order(727)) == ActionResult()
    assert writes(store, 727) == [("update_order", {"status": "on-hold"}),
                                  ("create_note", {"note": HOLD_NOTE, "customer_note": False})]
    assert store.order(727)["status"] == "on-hold"
    assert connector.perform(HOLD, order(727)) == ActionResult(already=True)
    assert len(writes(store, 727)) == 2  # the second hold read, and wrote nothing


def test_a_hold_cut_off_before_its_note_only_adds_the_note(store, connector):
    store.add_order(727)
    store.fail("create_note", 503)
    with pytest.raises(StoreUnavailable):
        connector.perform(HOLD, order(727))
    assert connector.perform(HOLD, order(727)) == ActionResult()
    assert store.statuses(727) == ["on-hold"]
    assert store.count(727, "create_note") == 1


@pytest.mark.parametrize("status", ["cancelled", "refunded", "completed"])
def test_hold_refuses_an_order_the_store_closed_or_shipped(store, connector, status):
    store.add_order(727, status=status)
    with pytest.raises(StoreRefused) as refused:
        connector.perform(HOLD, order(727))
    assert refused.value.store_code == f"order_status_{status}"
    assert writes(store, 727) == []


# ---- release --------------------------------------------------------------------------------


def test_release_sets_processing_with_a_note_once(store, connector):
    store.add_order(727)
    connector.perform(HOLD, order(727))
    assert connector.perform(RELEASE, order(727)) == ActionResult()
    assert store.statuses(727) == ["on-hold", "processing"]
    assert store.order(727)["notes"].count(RELEASE_NOTE) == 1
    assert connector.perform(RELEASE, order(727)) == ActionResult(already=True)
    assert store.statuses(727) == ["on-hold", "processing"]


@pytest.mark.parametrize("status", ["cancelled", "refunded"])
def test_release_never_resurrects_an_order_the_store_cancelled(store, connector, status):
    store.add_order(727)
    connector.perform(HOLD, order(727))
    store.set_status(727, status)
    with pytest.raises(StoreRefused) as refused:
        connector.perform(RELEASE, order(727))
    assert refused.value.store_code == f"order_status_{status}"
    assert store.statuses(727) == ["on-hold"] and store.order(727)["status"] == status


# ---- cancel and refund ----------------------------------------------------------------------


def test_cancel_refunds_the_whole_order_then_cancels_it(store, connector):
    store.add_order(727, total="29.35")
    connector.perform(HOLD, order(727))
    result = connector.perform(CANCEL, order(727, reason="expired"))
    refund = store.order(727)["refund_list"]
    assert len(refund) == 1 and refund[0]["amount"] == "29.35" and REFUND_MARK in refund[0]["reason"]
    assert result == ActionResult(detail={"refund_id": refund[0]["id"], "amount": "29.35"})
    sent = [c.body for c in store.calls_for(727) if c.kind == "create_refund"]
    assert sent == [{"amount": "29.35", "reason": refund[0]["reason"], "api_refund": True, "api_restock": True}]
    assert store.order(727)["status"] == "cancelled"
    assert store.statuses(727) == ["on-hold", "cancelled"]  # WooCommerce itself set `refunded` in between


def test_cancel_twice_refunds_once(store, connector):
    store.add_order(727)
    first = connector.perform(CANCEL, order(727))
    second = connector.perform(CANCEL, order(727))
    assert second == ActionResult(already=True, detail=first.detail)
    assert store.count(727, "create_refund", ok=False) == 1 and store.refund_count(727) == 1
    assert store.statuses(727) == ["cancelled"]


def test_a_crash_after_the_refund_finds_it_and_only_sets_the_status(store, connector):
    store.add_order(727)
    store.fail("update_order", 500)  # the refund is made; the status change is lost
    with pytest.raises(StoreUnavailable):
        connector.perform(CANCEL, order(727))
    assert store.refund_count(727) == 1 and store.order(727)["status"] == "refunded"
    result = connector.perform(CANCEL, order(727))
    assert not result.already and result.detail["refund_id"] == store.order(727)["refund_list"][0]["id"]
    assert store.count(727, "create_refund", ok=False) == 1
    assert store.statuses(727) == ["cancelled"]


def test_a_refund_whose_answer_never_came_is_not_made_again(store):
    store.add_order(727)
    slow = WooCommerceConnector(store.url, "ck_test", "cs_test", timeout=0.3)
    store.delay = 0.6  # the store makes the refund, the answer comes too late
    with pytest.raises(StoreUnavailable):
        slow.perform(CANCEL, order(727))
    store.delay = 0
    slow.perform(CANCEL, order(727))
    assert store.refund_count(727) == 1 and store.order(727)["status"] == "cancelled"


def test_only_what_is_left_is_refunded_never_more(store, connector):
    store.add_order(727, total="29.35")
    store.add_refund(727, "10.00", reason="a broken bottle")  # the store's own partial refund
    result = connector.perform(CANCEL, order(727))
    assert result.detail["amount"] == "19.35"
    refunds = [c for c in store.calls_for(727) if c.kind == "create_refund"]
    assert [(c.body["amount"], c.status) for c in refunds] == [("19.35", 201)]  # no refused attempt
    assert sum(Decimal(r["amount"]) for r in store.order(727)["refund_list"]) == Decimal("29.35")


def test_an_order_the_store_refunded_in_full_is_only_cancelled(store, connector):
    store.add_order(727, total="29.35")
    store.add_refund(727, "29.35")
    result = connector.perform(CANCEL, order(727))
    assert result.detail == {"refund_id": None, "refunded_by_store": True}
    assert store.count(727, "create_refund", ok=False) == 0
    assert store.order(727)["status"] == "cancelled"


def test_a_shipped_order_is_not_refunded_by_us(store, connector):
    store.add_order(727, status="completed")
    with pytest.raises(StoreRefused) as refused:
        connector.perform(CANCEL, order(727))
    assert refused.value.store_code == "order_status_completed"
    assert writes(store, 727) == []


def test_a_gateway_that_cannot_refund_is_a_refusal_and_the_order_stays_open(store, connector):
    store.add_order(727)
    store.gateway_refuses = True
    with pytest.raises(StoreRefused) as refused:
        connector.perform(CANCEL, order(727))
    assert refused.value.store_code == "woocommerce_rest_cannot_create_order_refund"
    assert "gateway" not in str(refused.value)  # the store's message text is never carried
    assert store.refund_count(727) == 0 and store.order(727)["status"] == "processing"


# ---- flag for review ------------------------------------------------------------------------


def test_flag_for_review_adds_one_note(store, connector):
    store.add_order(727)
    assert connector.perform(FLAG, order(727)) == ActionResult()
    assert connector.perform(FLAG, order(727)) == ActionResult(already=True)
    assert store.order(727)["notes"] == [REVIEW_NOTE] and store.statuses(727) == []


# ---- errors ---------------------------------------------------------------------------------


def test_an_unknown_order_is_refused_with_the_stores_code(store, connector):
    with pytest.raises(StoreRefused) as refused:
        connector.perform(HOLD, order(9999))
    assert refused.value.store_code == "woocommerce_rest_shop_order_invalid_id"


def test_a_4xx_is_refused_with_its_code_only(store, connector):
    store.add_order(727)
    store.fail("update_order", 400, code="woocommerce_rest_shop_order_invalid_status")
    with pytest.raises(StoreRefused) as refused:
        connector.perform(HOLD, order(727))
    assert refused.value.store_code == "woocommerce_rest_shop_order_invalid_status"
    assert "Injected" not in str(refused.value)


@pytest.mark.parametrize("status", [401, 403, 408, 409, 500, 502, 503])
def test_credentials_conflicts_and_5xx_are_unavailable(store, connector, status):
    store.add_order(727)
    store.fail("read_order", status)
    with pytest.raises(StoreUnavailable):
        connector.perform(HOLD, order(727))
    assert writes(store, 727) == []


def test_wrong_credentials_are_unavailable_not_refused(store):
    store.add_order(727)
    with pytest.raises(StoreUnavailable) as unavailable:
        WooCommerceConnector(store.url, "ck_test", "cs_rotated").perform(HOLD, order(727))
    assert "credentials" in str(unavailable.value)
    assert [c.code for c in store.calls] == ["woocommerce_rest_authentication_error"]


@pytest.mark.parametrize("header, expected", [("7", 7.0), ("0", 0.0), (None, None),
                                              ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)])  # a date passed
def test_429_is_unavailable_with_the_stores_retry_after(store, connector, header, expected):
    store.add_order(727)
    store.fail("read_order", 429, retry_after=header)
    with pytest.raises(StoreUnavailable) as unavailable:
        connector.perform(CANCEL, order(727))
    assert unavailable.value.retry_after == expected
    assert store.count(727, "create_refund", ok=False) == 0


def test_a_slow_store_times_out_as_unavailable(store):
    assert DEFAULT_TIMEOUT == 5.0
    store.add_order(727)
    store.delay = 0.5
    with pytest.raises(StoreUnavailable) as unavailable:
        WooCommerceConnector(store.url, "ck_test", "cs_test", timeout=0.2).perform(HOLD, order(727))
    assert "Timeout" in str(unavailable.value)


def test_no_store_listening_is_unavailable():
    with refused_url() as url, pytest.raises(StoreUnavailable):
        WooCommerceConnector(url, "ck", "cs").perform(HOLD, order(727))


def test_a_wrong_url_is_unavailable_not_a_refusal(store):
    store.add_order(727)
    with pytest.raises(StoreUnavailable):  # WordPress's rest_no_route: our URL, not this order
        WooCommerceConnector(store.url + "/shop", "ck_test", "cs_test").perform(HOLD, order(727))


# ---- the stand-in is strict -----------------------------------------------------------------


def call(store, method, path, body=None, *, auth=("ck_test", "cs_test"), params=None):
    return requests.request(method, store.url + API + path, json=body, auth=auth, params=params, timeout=5)


def test_the_stand_in_checks_basic_auth(store):
    store.add_order(727)
    assert call(store, "GET", "/orders/727").status_code == 200
    for auth, code in ((None, "woocommerce_rest_cannot_view"), (("ck_test", "nope"), "woocommerce_rest_authentication_error")):
        answer = call(store, "GET", "/orders/727", auth=auth)
        assert answer.status_code == 401 and answer.json()["code"] == code
        assert answer.json()["data"] == {"status": 401}
    sent = base64.b64encode(b"ck_test:cs_test").decode()
    assert requests.get(store.url + API + "/orders/727", headers={"Authorization": f"Basic {sent}"},
                        timeout=5).status_code == 200


@pytest.mark.parametrize("method, path, body, status, code", [
    ("PUT", "/orders/727", {"status": "on-hold", "note": "x"}, 400, "rest_invalid_param"),
    ("PUT", "/orders/727", {"status": "held"}, 400, "rest_invalid_param"),
    ("PUT", "/orders/727", {"status": 1}, 400, "rest_invalid_param"),
    ("POST", "/orders/727/notes", {"customer_note": False}, 400, "rest_missing_callback_param"),
    ("POST", "/orders/727/notes", {"note": "x", "customer_note": "no"}, 400, "rest_invalid_param"),
    ("POST", "/orders/727/refunds", {"amount": 5}, 400, "rest_invalid_param"),
    ("POST", "/orders/727/refunds", {"amount": "5", "restock": True}, 400, "rest_invalid_param"),
    ("POST", "/orders/727/refunds", {"amount": "-1"}, 400, "woocommerce_rest_invalid_order_refund"),
    ("POST", "/orders/727/refunds", {"amount": "29.36"}, 500, "woocommerce_rest_cannot_create_order_refund"),
    ("GET", "/orders/1/refunds", None, 404, "woocommerce_rest_order_invalid_id"),
    ("GET", "/orders/1", None, 404, "woocommerce_rest_shop_order_invalid_id"),
    ("DELETE", "/orders/727", None, 404, "rest_no_route"),
])
def test_the_stand_in_refuses_what_woocommerce_refuses(store, method, path, body, status, code):
    store.add_order(727, total="29.35")
    answer = call(store, method, path, body)
    assert answer.status_code == status
    assert answer.json()["code"] == code and answer.json()["data"]["status"] == status
    assert store.refund_count(727) == 0 and store.order(727)["status"] == "processing"


def test_the_stand_in_refuses_unknown_query_parameters(store):
    store.add_order(727)
    assert call(store, "GET", "/orders/727/refunds", params={"per_page": 100}).status_code == 200
    assert call(store, "GET", "/orders/727/refunds", params={"perpage": 100}).json()["code"] == "rest_invalid_param"


# ---- settings -------------------------------------------------------------------------------


def test_from_settings():
    assert WooCommerceConnector.from_settings(StoreSettings()) is None
    # Built without the keys (the functions that only decide which actions to write hold none);
    # performing an action then names the missing variable (ConfigError: the message is retried).
    keyless = WooCommerceConnector.from_settings(StoreSettings(woocommerce=WooCommerceSettings(
        url="https://shop.example.com", consumer_key="ck_1")))
    with pytest.raises(ConfigError) as missing:
        keyless.perform(StoreActionKind.HOLD, StoreOrder("woocommerce:1", "woocommerce", "1"))
    assert missing.value.variable == "WOOCOMMERCE_CONSUMER_SECRET"
    built = WooCommerceConnector.from_settings(StoreSettings(woocommerce=WooCommerceSettings(
        url="https://shop.example.com/", consumer_key="ck_1", consumer_secret="cs_1")))
    assert repr(built) == "WooCommerceConnector(url='https://shop.example.com/wp-json/wc/v3')"
    assert built.actions == ORDER_ACTIONS and built.source == "woocommerce"
