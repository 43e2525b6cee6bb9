"""The one table of stores (issue 21): the webhook routes, the connectors and the keys'
namespaces all come from `shared.stores.registry.STORES`, and the database's key rule names no
source, so a new store is its line there (plus its module, settings section and secrets' row)."""

from __future__ import annotations

import re
from pathlib import Path

from shared import inbound
from shared.db import migrate, schema
from shared.domain import keys
from shared.stores import registry

ROOT = Path(__file__).resolve().parents[2]


def test_the_table_is_well_formed():
    assert registry.problems() == []


def test_the_routes_connectors_and_namespaces_are_the_tables():
    assert set(inbound.sources()) == {store.source.path for store in registry.STORES.values()} | {
        sender.path for sender in inbound.not_stores()}
    assert set(registry.connectors()) == {name for name, store in registry.STORES.items() if store.connector}
    assert keys.namespaced() == tuple(name for name in registry.STORES if name != keys.GENERIC)


def test_a_bad_line_is_named(monkeypatch):
    class Twin:
        path = "/webhooks/orders"

    monkeypatch.setitem(registry.STORES, "Acme", registry.Store(Twin))
    assert registry.problems() == ["Acme: a store's name is lower-case words ([a-z][a-z0-9_]*)",
                                   "/webhooks/orders: two stores share it"]


def test_the_key_rule_names_no_source():
    for name in registry.namespaced():
        assert name not in schema.KEY_MATCHES_SOURCE
    assert keys.GENERIC in schema.KEY_MATCHES_SOURCE


def test_v16_spells_the_schemas_key_rule_as_it_is_now():
    assert migrate._V16_KEY_RULE == schema.KEY_MATCHES_SOURCE  # frozen copy, equal when written


def test_no_module_lists_the_stores_again():
    """Only the table (and each store's own module) names the namespaced sources together."""
    listing = re.compile(r"\(\s*keys\.LIGHTSPEED\s*,\s*keys\.SHOPIFY")
    for path in (ROOT / "shared").rglob("*.py"):
        assert not listing.search(path.read_text(encoding="utf-8")), path


def test_the_readme_counts_a_store_as_the_table_does():
    where = (ROOT / "README.md").read_text(encoding="utf-8").split("### Where to add", 1)[1].split("## ", 1)[0]
    assert "Its one line in `STORES`" in where and "tests/functions/test_new_store.py" in where
    for gone in ("keys.NAMESPACED", "`CONNECTORS`", "`SOURCES`", "rebuilds the"):
        assert gone not in where, gone
