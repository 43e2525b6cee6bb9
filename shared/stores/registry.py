"""The one table of stores (`STORES`), and which store connectors serve which orders (DESIGN.md 4b).

`STORES` has one line per store: its source name (`verification_sessions.source`), the webhook
source its orders come through (an `InboundSource` class: `path`, `from_settings`), its connector
factory (None: the store only sends orders), and whether its order ids are namespaced in the
session key (`<name>:<id>`, `shared.domain.keys`; only the generic webhook's are not). The
webhook routes (`shared.inbound.sources`), the connectors (`connectors()`) and the keys'
namespaces (`keys.namespaced()`) are read from it when used, so adding a store is its module,
its line here, its settings section and its secrets' row: no migration (the key CHECK names no
source) and no other list. `EVERY_SOURCE` holds the connectors told of every order's outcome
whatever its source: the outcome webhook. A factory takes `StoreSettings` and returns None when
that store is not configured.

`StoreRegistry.from_settings` builds the connectors (no network call: a connector calls out
only in `perform`); the composition root does it once, lazily (`Container.stores`), never at
import. It is the one place that decides which store actions a transition writes
(`connectors_for`) and whether the store refunds an order itself (`refunds`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.config import StoreSettings
from shared.domain import keys
from shared.inbound.lightspeed import LightspeedSource
from shared.inbound.orders import OrdersSource
from shared.stores.base import StoreActionKind, StoreConnector
from shared.stores.outcome_webhook import OutcomeWebhookConnector
from shared.stores.shopify import ShopifyConnector, ShopifySource
from shared.stores.woocommerce import WooCommerceConnector, WooCommerceSource

Factory = Callable[[StoreSettings], "StoreConnector | None"]
NAME = re.compile(keys.SOURCE_NAME)  # a namespaced store's name is its keys' prefix: lower-case words


@dataclass(frozen=True)
class Store:
    """One store's line: the webhook source class its orders come through (`InboundSource`:
    `path`, `from_settings(InboundSettings)`), its connector factory (None: it only sends
    orders), and whether its keys are `<name>:<id>` (only the generic webhook's are not)."""

    source: Any
    connector: Factory | None = None
    namespaced: bool = True


# source name -> its store. A new store is one line here.
STORES: dict[str, Store] = {
    keys.GENERIC: Store(OrdersSource, namespaced=False),
    keys.LIGHTSPEED: Store(LightspeedSource),
    keys.SHOPIFY: Store(ShopifySource, ShopifyConnector.from_settings),
    keys.WOOCOMMERCE: Store(WooCommerceSource, WooCommerceConnector.from_settings),
}


def namespaced() -> tuple[str, ...]:
    """The sources whose order ids are prefixed in the key, in the table's order."""
    return tuple(name for name, store in STORES.items() if store.namespaced)


def connectors() -> dict[str, Factory]:
    """source -> the factory of that store's own connector (stores without one are left out)."""
    return {name: store.connector for name, store in STORES.items() if store.connector is not None}


def problems() -> list[str]:
    """What is wrong with the table (a unit test holds it empty): the key rule the database
    holds (`shared.db.schema.KEY_MATCHES_SOURCE`) knows one non-namespaced source, the generic
    webhook, and a namespaced name must be the lower-case word its keys begin with; two stores
    may not share a webhook path."""
    found = [f"{name}: only {keys.GENERIC} is not namespaced" for name, store in STORES.items()
             if store.namespaced == (name == keys.GENERIC)]
    found += [f"{name}: a store's name is lower-case words ({keys.SOURCE_NAME})" for name in namespaced()
              if not NAME.fullmatch(name)]
    paths = [store.source.path for store in STORES.values()]
    found += [f"{path}: two stores share it" for path in sorted({p for p in paths if paths.count(p) > 1})]
    return found

# name -> the factory of a connector that serves every source (told, never acting on the store's order).
EVERY_SOURCE: dict[str, Factory] = {
    "outcome_webhook": OutcomeWebhookConnector.from_settings,
}


@dataclass(frozen=True)
class StoreRegistry:
    """The configured connectors: each source's own (named by the source), and those for every source."""

    own: Mapping[str, StoreConnector] = field(default_factory=dict)
    every: Mapping[str, StoreConnector] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, stores: StoreSettings) -> StoreRegistry:
        own = {source: c for source, make in connectors().items() if (c := make(stores)) is not None}
        every = {name: c for name, make in EVERY_SOURCE.items() if (c := make(stores)) is not None}
        return cls(own, every)

    def connectors_for(self, source: str, action: StoreActionKind | str) -> tuple[str, ...]:
        """The names of the connectors that implement `action` for an order from `source`:
        a transition writes one store action (claim row and message) per name, none when empty."""
        kind = StoreActionKind(action)
        names = [source] if source in self.own and kind in self.own[source].actions else []
        names += [name for name, c in self.every.items() if kind in c.actions]
        return tuple(names)

    def connector(self, name: str) -> StoreConnector | None:
        return self.own.get(name) or self.every.get(name)

    def refunds(self, source: str) -> bool:
        """Whether the source's own store connector cancels and refunds (so no refund request
        goes to REFUND_BACKEND, and staff are not asked to refund by hand)."""
        own = self.own.get(source)
        return own is not None and StoreActionKind.CANCEL_AND_REFUND in own.actions

    def acts(self, name: str) -> bool:
        """Whether connector `name` acts on the store's order (its own), not only tells (every source's)."""
        return name in self.own


NO_STORES = StoreRegistry()
