"""Verify once's keys and settings (DESIGN.md 3b), without I/O."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest

from shared.config import ReuseSettings
from shared.domain import customers
from shared.errors import ConfigError

PEPPER = b"pepper"


def test_account_email_and_source_all_make_the_key():
    key = customers.keys_for(PEPPER, "orders", "c-1", "Ann@Example.com ").customer_key
    assert key == customers.keys_for(PEPPER, "orders", "c-1", " ann@example.com").customer_key  # normalised
    assert key != customers.keys_for(PEPPER, "orders", "c-2", "ann@example.com").customer_key
    assert key != customers.keys_for(PEPPER, "orders", "c-1", "bob@example.com").customer_key
    assert key != customers.keys_for(PEPPER, "lightspeed", "c-1", "ann@example.com").customer_key
    assert key != customers.keys_for(b"other", "orders", "c-1", "ann@example.com").customer_key
    assert key != hashlib.sha256("orders\x1fc-1\x1fann@example.com".encode()).hexdigest()


def test_the_email_key_depends_on_the_email_alone():
    one = customers.keys_for(PEPPER, "orders", "c-1", "Ann@example.com").email_key
    assert one == customers.keys_for(PEPPER, "shopify", "99", "ann@example.com").email_key
    assert one == customers.email_key(PEPPER, " ANN@example.com")
    assert one != customers.keys_for(PEPPER, "orders", "c-1", "ann@example.com").customer_key


@pytest.mark.parametrize("source, customer_id", [("orders", None), ("orders", ""), ("orders", "  "),
                                                 ("woocommerce", "0")])
def test_a_guest_has_no_key(source, customer_id):
    assert customers.keys_for(PEPPER, source, customer_id, "ann@example.com") is None


@pytest.mark.parametrize("value, expected", [(None, timedelta(days=365)), ("0", None), ("30d", timedelta(days=30)),
                                             ("90s", timedelta(seconds=90))])
def test_reverify_after(value, expected):
    env = {} if value is None else {"REVERIFY_AFTER": value}
    settings = ReuseSettings.from_env(env)
    assert settings.reverify_after == expected and settings.enabled == (expected is not None)


def test_a_bad_reverify_after_names_the_variable():
    with pytest.raises(ConfigError, match="REVERIFY_AFTER"):
        ReuseSettings.from_env({"REVERIFY_AFTER": "forever"})


def test_the_pepper_is_required_only_while_reuse_is_on_and_never_shown():
    with pytest.raises(ConfigError, match="CUSTOMER_KEY_SECRET"):
        ReuseSettings.from_env({}).pepper()
    assert ReuseSettings.from_env({"REVERIFY_AFTER": "0"}).pepper() is None
    on = ReuseSettings.from_env({"CUSTOMER_KEY_SECRET": "s3cret-pepper"})
    assert on.pepper() == b"s3cret-pepper" and "s3cret-pepper" not in repr(on)
