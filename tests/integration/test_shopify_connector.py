"""The Shopify connector against the strict Admin GraphQL stand-in: each action's calls and
results, our holds only, cancel once, refusals by code, throttling, credentials, timeouts, and a
burst that never overdraws the cost bucket. The stand-in validates every document and its
variables against the SDL excerpt of Shopify's schema (devstack/stores/shopify_admin.graphql)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from graphql import build_schema, parse, validate

from devstack.stores.shopify import DEFAULT_TOKEN, SCHEMA_PATH, ShopifyStandIn
from shared.config import StoreSettings
from shared.stores import shopify as module
from shared.stores.base import ORDER_ACTIONS, ActionResult, StoreActionKind, StoreOrder, StoreRefused, StoreUnavailable
from shared.errors import ConfigError
from shared.stores.shopify import DEFAULT_TIMEOUT, HOLD_HANDLE, ShopifyConnector

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "shpat_contract_test"
HOLD, RELEASE, CANCEL, FLAG = (StoreActionKind.HOLD, StoreActionKind.RELEASE,
                               StoreActionKind.CANCEL_AND_REFUND, StoreActionKind.FLAG_FOR_REVIEW)
DOCUMENTS = [module.ORDER_QUERY, module.ORDER_CANCELLED_QUERY, module.HOLD_MUTATION, module.RELEASE_MUTATION,
             module.CANCEL_MUTATION, module.TAGS_ADD_MUTATION]


@pytest.fixture
def shop():
    with ShopifyStandIn(token=TOKEN) as stand_in:
        yield stand_in


@pytest.fixture
def connector(shop):
    return ShopifyConnector(shop.url, TOKEN)


def order(number: int, gid: str | None = None, reason: str | None = None, state=None) -> StoreOrder:
    return StoreOrder(f"shopify:{number}", "shopify", gid or f"gid://shopify/Order/{number}", reason, state or {})


def post(shop, query: str, variables: dict | None = None, token: str = TOKEN) -> dict:
    response = requests.post(shop.url, json={"query": query, "variables": variables or {}},
                             headers={"X-Shopify-Access-Token": token}, timeout=5)
    return response.json()


# ---- every document the connector sends is valid Admin GraphQL --------------------------------


def test_every_document_of_the_connector_validates_against_the_schema_excerpt():
    schema = build_schema(SCHEMA_PATH.read_text(encoding="utf-8"))
    for document in DOCUMENTS:
        assert validate(schema, parse(document)) == [], document


@pytest.mark.parametrize("query, variables", [
    ("query($id: ID!) { order(id: $id) { id cancelledAtt } }", {"id": "gid://shopify/Order/1"}),  # field
    ("mutation($id: ID!) { fulfillmentOrderReleaseHold(id: $id, holdId: [\"x\"]) { userErrors { code } } }",
     {"id": "gid://shopify/FulfillmentOrder/1"}),  # argument
    ("mutation($id: ID!) { tagsAdd(id: $id, tags: [\"a\"]) { userErrors { code } } }",
     {"id": "gid://shopify/Order/1"}),  # UserError has no code
    ("mutation($id: ID!, $h: FulfillmentOrderHoldInput!) { fulfillmentOrderHold(id: $id, fulfillmentHold: $h) "
     "{ userErrors { code } } }", {"id": "gid://shopify/FulfillmentOrder/1", "h": {"reason": "AGE_CHECK"}}),  # enum
    ("mutation($id: ID!, $h: FulfillmentOrderHoldInput!) { fulfillmentOrderHold(id: $id, fulfillmentHold: $h) "
     "{ userErrors { code } } }", {"id": "gid://shopify/FulfillmentOrder/1", "h": {"reasonNote": "x", "reason": "OTHER"}}),
    ("mutation($o: ID!) { orderCancel(orderId: $o, reason: OTHER) { job { id } } }",
     {"o": "gid://shopify/Order/1"}),  # restock is required
    ("query($id: ID!) { order(id: $id) { id } }", {}),  # a required variable missing
])
def test_a_misspelt_field_argument_enum_or_variable_is_refused_and_changes_nothing(shop, query, variables):
    gid = shop.add_order(1)
    answer = post(shop, query, variables)
    assert "data" not in answer or answer["data"] is None
    assert answer["errors"] and all(e["extensions"]["code"] for e in answer["errors"])
    assert shop.invalid == 1 and shop.mutations == [] and shop.holds(gid) == []


def test_a_misspelt_document_in_the_connector_is_a_refusal_and_nothing_is_cancelled(shop, connector, monkeypatch):
    gid = shop.add_order(2)
    monkeypatch.setattr(module, "CANCEL_MUTATION", module.CANCEL_MUTATION.replace("staffNote: $staffNote", "staffNotes: $staffNote"))
    with pytest.raises(StoreRefused) as refused:
        connector.perform(CANCEL, order(2, gid, "expired"))
    assert refused.value.store_code == "GRAPHQL_VALIDATION_FAILED"
    assert shop.mutation_count("orderCancel") == 0 and shop.orders[gid].cancelled_at is None


def test_the_stand_in_checks_the_token_and_the_path(shop):
    shop.add_order(3)
    assert requests.post(shop.url, json={"query": "{ order(id: \"gid://shopify/Order/3\") { id } }"},
                         headers={"X-Shopify-Access-Token": "wrong"}, timeout=5).status_code == 401
    assert requests.post(shop.url.replace("2025-10", "2019-01"), json={"query": "{ x }"},
                         headers={"X-Shopify-Access-Token": TOKEN}, timeout=5).status_code == 404


# ---- hold ---------------------------------------------------------------------------------------


def test_hold_places_our_hold_on_each_open_fulfillment_order_and_tags_the_order(shop, connector):
    gid = shop.add_order(1001, fulfillment_orders=2)
    result = connector.perform(HOLD, order(1001, gid))
    fos = shop.orders[gid].fulfillment_orders
    assert result == ActionResult(already=False, detail={"holds": {fo.id: [fo.holds[0].id] for fo in fos}})
    holds = [m.variables for m in shop.mutations if m.name == "fulfillmentOrderHold"]
    assert holds == [{"id": fo.id, "fulfillmentHold": {
        "reason": "OTHER", "reasonNotes": "Awaiting age verification", "handle": HOLD_HANDLE,
        "notifyMerchant": False, "fulfillmentOrderLineItems": []}} for fo in fos]
    assert all(fo.status == "ON_HOLD" for fo in fos)
    assert shop.orders[gid].tags == ["age-verification-pending"]
    assert [m.name for m in shop.mutations] == ["fulfillmentOrderHold", "fulfillmentOrderHold", "tagsAdd"]


def test_hold_twice_places_no_second_hold(shop, connector):
    gid = shop.add_order(1002)
    first = connector.perform(HOLD, order(1002, gid))
    again = ShopifyConnector(shop.url, TOKEN).perform(HOLD, order(1002, gid))  # a retry after a crash
    assert again == ActionResult(already=True, detail=first.detail)
    assert shop.mutation_count("fulfillmentOrderHold", gid) == 1 and len(shop.holds(gid)) == 1


def test_a_hold_whose_answer_was_lost_is_found_on_the_retry_and_not_placed_again(shop):
    gid = shop.add_order(1006, fulfillment_orders=2)
    shop.lose_answer("fulfillmentOrderHold", 1.0)  # the first hold takes effect; its answer comes too late
    with pytest.raises(StoreUnavailable):
        ShopifyConnector(shop.url, TOKEN, timeout=0.4).perform(HOLD, order(1006, gid))
    time.sleep(0.8)
    again = ShopifyConnector(shop.url, TOKEN).perform(HOLD, order(1006, gid))  # the re-driven action
    fos = shop.orders[gid].fulfillment_orders
    assert again.detail == {"holds": {fo.id: [fo.holds[0].id] for fo in fos}} and not again.already
    assert shop.mutation_count("fulfillmentOrderHold", gid) == 2  # one per fulfillment order, none twice
    assert all(len(fo.holds) == 1 for fo in fos)


def test_an_order_with_more_fulfillment_orders_than_one_page_is_left_to_a_person(shop, connector):
    gid = shop.add_order(1007, fulfillment_orders=11)
    with pytest.raises(StoreRefused) as refused:
        connector.perform(HOLD, order(1007, gid))
    assert refused.value.store_code == "TOO_MANY_FULFILLMENT_ORDERS" and shop.mutations == []


def test_hold_adds_ours_beside_another_apps_hold_and_skips_closed_fulfillment_orders(shop, connector):
    gid = shop.add_order(1003, fulfillment_orders=2)
    foreign = shop.add_foreign_hold(gid, 0)
    shop.orders[gid].fulfillment_orders[1].status = "CLOSED"
    result = connector.perform(HOLD, order(1003, gid))
    first = shop.orders[gid].fulfillment_orders[0]
    assert [h.id for h in first.holds][0] == foreign and len(first.holds) == 2
    assert result.detail == {"holds": {first.id: [first.holds[1].id]}}
    assert shop.mutation_count("fulfillmentOrderHold") == 1


def test_hold_of_a_cancelled_order_places_nothing(shop, connector):
    gid = shop.add_order(1004, cancelled=True)
    assert connector.perform(HOLD, order(1004, gid)).already
    assert shop.mutations == []


def test_the_order_gid_is_rebuilt_from_the_key_when_the_store_ref_is_missing(shop, connector):
    gid = shop.add_order(1005)
    connector.perform(HOLD, StoreOrder("shopify:1005", "shopify", ""))
    assert shop.mutation_count("fulfillmentOrderHold", gid) == 1


# ---- release ------------------------------------------------------------------------------------


def test_release_names_only_our_hold_ids_and_another_apps_hold_stays(shop, connector):
    gid = shop.add_order(2001, fulfillment_orders=2)
    held = connector.perform(HOLD, order(2001, gid))
    foreign = shop.add_foreign_hold(gid, 1, handle="fraud")
    released = connector.perform(RELEASE, order(2001, gid, state=held.detail))
    calls = [m.variables for m in shop.mutations if m.name == "fulfillmentOrderReleaseHold"]
    assert calls == [{"id": fo, "holdIds": ids} for fo, ids in held.detail["holds"].items()]
    assert released == ActionResult(already=False, detail={"released": held.detail["holds"]})
    assert [h.id for h in shop.holds(gid)] == [foreign]
    assert [fo.status for fo in shop.orders[gid].fulfillment_orders] == ["OPEN", "ON_HOLD"]
    assert shop.orders[gid].tags == ["age-verification-pending", "age-verified"]


def test_release_twice_sends_one_release_and_no_release_ever_goes_without_hold_ids(shop, connector):
    gid = shop.add_order(2002)
    held = connector.perform(HOLD, order(2002, gid))
    connector.perform(RELEASE, order(2002, gid, state=held.detail))
    assert connector.perform(RELEASE, order(2002, gid, state=held.detail)).already
    assert shop.mutation_count("fulfillmentOrderReleaseHold") == 1
    assert all(m.variables["holdIds"] for m in shop.mutations if m.name == "fulfillmentOrderReleaseHold")


def test_release_without_a_recorded_hold_finds_ours_by_its_handle_and_leaves_others(shop, connector):
    gid = shop.add_order(2003)
    connector.perform(HOLD, order(2003, gid))
    foreign = shop.add_foreign_hold(gid, 0, handle=HOLD_HANDLE)  # the same handle, another app
    connector.perform(RELEASE, order(2003, gid))
    assert [h.id for h in shop.holds(gid)] == [foreign]


def test_release_of_an_order_held_only_by_others_releases_nothing(shop, connector):
    gid = shop.add_order(2004)
    foreign = shop.add_foreign_hold(gid, 0)
    assert connector.perform(RELEASE, order(2004, gid, state={"holds": {"x": [foreign]}})).already
    assert shop.mutation_count("fulfillmentOrderReleaseHold") == 0 and [h.id for h in shop.holds(gid)] == [foreign]


def test_the_stand_in_releases_every_hold_without_hold_ids_as_shopify_documents(shop):
    gid = shop.add_order(2005)
    shop.add_foreign_hold(gid, 0)
    fo = shop.orders[gid].fulfillment_orders[0].id
    post(shop, "mutation($id: ID!) { fulfillmentOrderReleaseHold(id: $id) { userErrors { code } } }", {"id": fo})
    assert shop.holds(gid) == []  # why the connector's document declares $holdIds: [ID!]!


# ---- cancel and refund ---------------------------------------------------------------------------


def test_cancel_and_refund_cancels_once_with_a_refund_to_the_original_payment_and_records_the_job(shop, connector):
    gid = shop.add_order(3001)
    result = connector.perform(CANCEL, order(3001, gid, "expired"))
    assert shop.mutation_count("orderCancel", gid) == 1
    (cancel,) = [m.variables for m in shop.mutations if m.name == "orderCancel"]
    assert cancel == {"orderId": gid, "reason": "OTHER", "refundMethod": {"originalPaymentMethodsRefund": True},
                      "restock": True, "notifyCustomer": False,
                      "staffNote": "Age verification was not completed in time: cancelled and refunded"}
    assert "refund" not in cancel  # the deprecated argument
    assert result.detail["job_id"].startswith("gid://shopify/Job/") and result.already is False
    again = connector.perform(CANCEL, order(3001, gid, "expired"))
    assert again.already and again.detail == {"cancelled_at": shop.orders[gid].cancelled_at}
    assert shop.mutation_count("orderCancel") == 1


def test_notify_customer_follows_the_setting_and_the_staff_note_names_the_outcome(shop):
    gid = shop.add_order(3002)
    ShopifyConnector(shop.url, TOKEN, notify_customer=True).perform(CANCEL, order(3002, gid, "underage"))
    (cancel,) = [m.variables for m in shop.mutations if m.name == "orderCancel"]
    assert cancel["notifyCustomer"] is True and "minimum age" in cancel["staffNote"]


def test_an_order_cancelled_in_the_store_first_is_done_without_a_call(shop, connector):
    gid = shop.add_order(3003, cancelled=True)
    assert connector.perform(CANCEL, order(3003, gid, "declined")).already
    assert shop.mutations == []


# ---- flag for review -----------------------------------------------------------------------------


def test_flag_for_review_tags_the_order(shop, connector):
    gid = shop.add_order(4001)
    assert connector.perform(FLAG, order(4001, gid)).detail == {"tag": "age-verification-review"}
    assert shop.orders[gid].tags == ["age-verification-review"]
    assert connector.actions == ORDER_ACTIONS


# ---- refusals are codes, never the store's text ---------------------------------------------------


@pytest.mark.parametrize("kind, mutation, code", [
    (CANCEL, "orderCancel", "NO_REFUND_PERMISSION"),
    (HOLD, "fulfillmentOrderHold", "FULFILLMENT_ORDER_HOLD_LIMIT_REACHED"),
])
def test_user_errors_are_a_refusal_with_the_stores_code(shop, connector, kind, mutation, code):
    gid = shop.add_order(5001)
    shop.user_error(mutation, code)
    with pytest.raises(StoreRefused) as refused:
        connector.perform(kind, order(5001, gid, "expired"))
    assert refused.value.store_code == code and "could not" not in str(refused.value)


def test_a_tags_add_user_error_has_no_code_and_is_refused_as_such(shop, connector):
    gid = shop.add_order(5002)
    shop.user_error("tagsAdd", "any")
    with pytest.raises(StoreRefused) as refused:
        connector.perform(FLAG, order(5002, gid))
    assert refused.value.store_code == "USER_ERROR" and "does not exist" not in str(refused.value)


def test_release_refused_for_a_hold_that_is_not_ours_is_a_refusal(shop, connector):
    gid = shop.add_order(5003)
    connector.perform(HOLD, order(5003, gid))
    shop.user_error("fulfillmentOrderReleaseHold", "INVALID_ACCESS")
    with pytest.raises(StoreRefused) as refused:
        connector.perform(RELEASE, order(5003, gid))
    assert refused.value.store_code == "INVALID_ACCESS"


def test_an_unknown_order_is_a_refusal(shop, connector):
    with pytest.raises(StoreRefused) as refused:
        connector.perform(HOLD, order(5999))
    assert refused.value.store_code == "ORDER_NOT_FOUND" and shop.mutations == []


# ---- transient: throttling, 429, credentials, 5xx, timeouts --------------------------------------


def test_throttled_is_unavailable_with_the_buckets_wait(shop, connector):
    gid = shop.add_order(6001)
    shop.set_bucket(1000, 2.0, available=5)
    with pytest.raises(StoreUnavailable) as unavailable:
        connector.perform(FLAG, order(6001, gid))
    assert shop.throttled == 1 and shop.mutations == []
    assert unavailable.value.retry_after == pytest.approx((10 - 5) / 2.0, abs=0.2)


def test_a_429_is_unavailable_with_its_retry_after(shop, connector):
    gid = shop.add_order(6002)
    shop.script(429, retry_after=3)
    with pytest.raises(StoreUnavailable) as unavailable:
        connector.perform(CANCEL, order(6002, gid, "expired"))
    assert unavailable.value.retry_after == 3.0 and shop.mutations == []
    connector.perform(CANCEL, order(6002, gid, "expired"))  # later, it goes through once
    assert shop.mutation_count("orderCancel") == 1


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_5xx_is_unavailable(shop, connector, status):
    shop.add_order(6003)
    shop.script(status)
    with pytest.raises(StoreUnavailable):
        connector.perform(FLAG, order(6003))


def test_a_wrong_or_revoked_token_is_unavailable_not_a_refusal(shop):
    gid = shop.add_order(6004)
    with pytest.raises(StoreUnavailable, match="access token"):
        ShopifyConnector(shop.url, "shpat_revoked").perform(HOLD, order(6004, gid))
    assert shop.unauthorized == 1 and shop.mutations == []


def test_a_slow_store_times_out_as_unavailable(shop):
    gid = shop.add_order(6005)
    shop.delay = 1.0
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="ReadTimeout"):
        ShopifyConnector(shop.url, TOKEN, timeout=0.3).perform(FLAG, order(6005, gid))
    assert time.monotonic() - started < 1.0
    assert DEFAULT_TIMEOUT == 5.0 and ShopifyConnector(shop.url, TOKEN)._timeout == 5.0


def test_nothing_listening_is_unavailable():
    with ShopifyStandIn() as gone:
        url = gone.url
    with pytest.raises(StoreUnavailable, match="unreachable"):
        ShopifyConnector(url, TOKEN).perform(FLAG, order(6006))


# ---- the cost bucket -----------------------------------------------------------------------------


def test_a_burst_on_a_small_bucket_never_overdraws_it_and_every_order_is_tagged_once(shop):
    shop.set_bucket(30, 40.0)  # 3 mutations at once, 4 more each second
    gids = [shop.add_order(7000 + n) for n in range(16)]
    connector = ShopifyConnector(shop.url, TOKEN)
    retries = []

    def flag(gid: str) -> None:
        number = int(gid.rsplit("/", 1)[1])
        while True:
            try:
                connector.perform(FLAG, order(number, gid))
                return
            except StoreUnavailable as exc:
                assert exc.retry_after is not None and exc.retry_after > 0
                retries.append(exc.retry_after)
                time.sleep(exc.retry_after)

    threads = [threading.Thread(target=flag, args=(gid,)) for gid in gids]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    elapsed = time.monotonic() - started
    assert shop.throttled == 0
    assert all(shop.mutation_count("tagsAdd", gid) == 1 for gid in gids)
    assert shop.mutation_count() == 16
    assert elapsed >= (160 - 30) / 40.0 * 0.9  # it was the bucket that paced the burst
    assert retries  # some waits were longer than the connector waits in place


def test_the_bucket_learns_from_the_first_answer_and_refunds_the_unused_query_cost(shop, connector):
    gid = shop.add_order(7100)
    connector.perform(HOLD, order(7100, gid))
    assert connector.bucket.maximum == 1000 and connector.bucket.restore_rate == 100
    assert connector.bucket.available <= shop.available + 0.001  # the stand-in reports 3 decimals
    assert connector.bucket.available > 1000 - 3 * 10 - 2 * 50  # the queries' unused cost came back


# ---- settings --------------------------------------------------------------------------------------


def test_from_settings_needs_the_shop_and_the_token_and_defaults_to_the_shops_endpoint():
    assert ShopifyConnector.from_settings(StoreSettings.from_env({})) is None
    # Built without the token (the functions that only decide which actions to write hold none);
    # performing an action then names the missing variable (ConfigError: the message is retried).
    tokenless = ShopifyConnector.from_settings(StoreSettings.from_env({"SHOPIFY_SHOP_DOMAIN": "a.myshopify.com"}))
    with pytest.raises(ConfigError) as missing:
        tokenless.perform(HOLD, order(1))
    assert missing.value.variable == "SHOPIFY_ADMIN_TOKEN"
    built = ShopifyConnector.from_settings(StoreSettings.from_env({
        "SHOPIFY_SHOP_DOMAIN": "a.myshopify.com", "SHOPIFY_ADMIN_TOKEN": "shpat_x", "SHOPIFY_NOTIFY_CUSTOMER": "true"}))
    assert repr(built) == "ShopifyConnector(url='https://a.myshopify.com/admin/api/2025-10/graphql.json')"
    assert built._notify_customer is True and "shpat_x" not in repr(built)


def test_the_stand_in_as_a_process_prints_one_line_per_mutation():
    process = subprocess.Popen([sys.executable, "-m", "devstack.stores.shopify", "--port", "0"],
                               stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        url = process.stdout.readline().strip().rsplit(" ", 1)[-1]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/graphql.json")
        connector = ShopifyConnector(url, DEFAULT_TOKEN)
        held = connector.perform(HOLD, order(8001))  # the process creates an order when first named
        connector.perform(RELEASE, order(8001, state=held.detail))
        lines = [process.stdout.readline().strip() for _ in range(4)]
        assert lines == ["shopify stand-in: fulfillmentOrderHold order 8001", "shopify stand-in: tagsAdd order 8001",
                         "shopify stand-in: fulfillmentOrderReleaseHold order 8001",
                         "shopify stand-in: tagsAdd order 8001"]
        counts = requests.get(url.split("/admin/")[0] + "/_standin/counts", timeout=5).json()
        assert [m["name"] for m in counts["mutations"]] == [
            "fulfillmentOrderHold", "tagsAdd", "fulfillmentOrderReleaseHold", "tagsAdd"]
        assert {m["order"] for m in counts["mutations"]} == {"gid://shopify/Order/8001"}
        assert counts["throttled"] == 0 and counts["invalid"] == 0
        # each mutation's receive time, in order (a harness times the store's side with it), and
        # every point charged: 4 mutations at 10, and the two reads' actual cost (6 each, one
        # fulfillment order)
        times = [m["at"] for m in counts["mutations"]]
        assert times == sorted(times) and abs(times[-1] - time.time()) < 30
        assert counts["charged"] == 4 * 10 + 2 * 6
        assert counts["bucket"] == {"max_available": 1000.0, "restore_rate": 100.0, "mutation_cost": 10.0}
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_stand_in_process_takes_its_bucket_and_mutation_cost_from_flags():
    process = subprocess.Popen([sys.executable, "-m", "devstack.stores.shopify", "--port", "0", "--quiet",
                                "--max-available", "30", "--restore-rate", "5", "--mutation-cost", "15"],
                               stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        url = process.stdout.readline().strip().rsplit(" ", 1)[-1]
        connector = ShopifyConnector(url, DEFAULT_TOKEN)
        connector.perform(CANCEL, order(8002))  # a read of cancelledAt (1 point), one orderCancel (15)
        counts = requests.get(url.split("/admin/")[0] + "/_standin/counts", timeout=5).json()
        assert counts["bucket"] == {"max_available": 30.0, "restore_rate": 5.0, "mutation_cost": 15.0}
        assert [m["name"] for m in counts["mutations"]] == ["orderCancel"] and counts["charged"] == 16.0
        process.terminate()
        assert process.stdout.read() == ""  # --quiet: no line per mutation
    finally:
        process.terminate()
        process.wait(timeout=10)
