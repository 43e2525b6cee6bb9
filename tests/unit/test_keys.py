"""Session keys (issue 10 item 5): one key per (source, store order id), injective, with an inverse."""

from __future__ import annotations

import itertools

import pytest

from shared.domain import keys
from shared.domain.keys import OrderRef

# Generic ids: none begins like a namespaced key (`<lower-case word>:`).
IDS = ["123", "A-1001", ":", "X:lightspeed:1", "lightspeed", "Lightspeed:1", "0af7b240-abf0-11e9", "1:a", "a b:1"]


def test_generic_orders_keep_their_id_and_lightspeed_sales_are_prefixed():
    assert keys.session_key("orders", "123") == "123"
    assert keys.session_key("lightspeed", "123") == "lightspeed:123"


@pytest.mark.parametrize("source, store_id", [*itertools.product(("orders", "lightspeed"), IDS),
                                              ("lightspeed", "lightspeed:5")])
def test_ref_inverts_session_key(source, store_id):
    assert keys.ref(keys.session_key(source, store_id)) == OrderRef(source, store_id)


def test_no_two_orders_share_a_key():
    pairs = [*itertools.product(("orders", "lightspeed"), IDS), ("lightspeed", "lightspeed:5")]
    made = [keys.session_key(source, store_id) for source, store_id in pairs]
    assert len(set(made)) == len(pairs)


@pytest.mark.parametrize("store_id", ["lightspeed:123", "lightspeed:", "shopify:1", "woocommerce:1",
                                      # v16: any lower-case word, a store's or not (the database's rule names none)
                                      "a:b", "x:lightspeed:1", "inv_2:5", "newstore:1"])
def test_a_generic_id_with_a_reserved_prefix_has_no_key(store_id):
    assert keys.is_reserved(store_id)
    with pytest.raises(ValueError):
        keys.session_key("orders", store_id)


def test_candidate_keys_for_a_bare_id_and_for_a_key():
    assert keys.candidate_keys("123") == ["123", "lightspeed:123", "shopify:123", "woocommerce:123"]
    assert keys.candidate_keys("lightspeed:123") == ["lightspeed:123"]
    assert keys.candidate_keys("shopify:123") == ["shopify:123"]


def test_a_source_not_in_the_stores_table_has_no_key():
    with pytest.raises(ValueError):
        keys.session_key("veriff", "1")


def test_a_legacy_generic_key_that_begins_with_a_word_no_store_has_reads_as_generic():
    # Stored before v16 (then accepted): no store is named `inv`, so it is a generic order's key.
    assert keys.ref("inv:5") == OrderRef("orders", "inv:5")
    assert keys.candidate_keys("inv:5") == ["inv:5"]


def test_a_store_added_to_the_table_is_namespaced_with_no_other_change(monkeypatch):
    from shared.stores import registry
    from shared.stores.registry import Store

    class AcmeSource:
        path = "/webhooks/acme"

    monkeypatch.setitem(registry.STORES, "acme", Store(AcmeSource))
    assert keys.session_key("acme", "5") == "acme:5" and keys.ref("acme:5") == OrderRef("acme", "5")
    assert keys.is_namespaced("acme") and "acme:5" in keys.candidate_keys("5")
