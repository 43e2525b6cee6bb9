"""Session keys (issue 10 item 5): one key per (source, store order id), injective, with an inverse."""

from __future__ import annotations

import itertools

import pytest

from shared.domain import keys
from shared.domain.keys import OrderRef

IDS = ["123", "A-1001", "a:b", ":", "x:lightspeed:1", "lightspeed", "Lightspeed:1", "0af7b240-abf0-11e9"]


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


@pytest.mark.parametrize("store_id", ["lightspeed:123", "lightspeed:", "shopify:1", "woocommerce:1"])
def test_a_generic_id_with_a_reserved_prefix_has_no_key(store_id):
    assert keys.is_reserved(store_id)
    with pytest.raises(ValueError):
        keys.session_key("orders", store_id)


def test_candidate_keys_for_a_bare_id_and_for_a_key():
    assert keys.candidate_keys("123") == ["123", "lightspeed:123", "shopify:123", "woocommerce:123"]
    assert keys.candidate_keys("lightspeed:123") == ["lightspeed:123"]
    assert keys.candidate_keys("shopify:123") == ["shopify:123"]
