"""Test helpers for the stores table (`shared.stores.registry.STORES`)."""

from __future__ import annotations

import dataclasses

from shared.stores import registry


def use_connector(monkeypatch, source: str, factory) -> None:
    """`source`'s store line with the test's connector factory, for the test's length."""
    monkeypatch.setitem(registry.STORES, source, dataclasses.replace(registry.STORES[source], connector=factory))
