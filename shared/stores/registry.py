"""Which store connectors serve which orders (DESIGN.md 4b): the one table of stores.

`CONNECTORS` maps a source (`shared.domain.keys`) to its store's connector factory; adding a
store is one line here (plus its module, settings section and secrets row). `EVERY_SOURCE`
holds the connectors told of every order's outcome whatever its source: the outcome webhook.
A factory takes `StoreSettings` and returns None when that store is not configured.

`StoreRegistry.from_settings` builds the connectors (no network call: a connector calls out
only in `perform`); the composition root does it once, lazily (`Container.stores`), never at
import. It is the one place that decides which store actions a transition writes
(`connectors_for`) and whether the store refunds an order itself (`refunds`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from shared.config import StoreSettings
from shared.stores.base import StoreActionKind, StoreConnector
from shared.domain import keys
from shared.stores.outcome_webhook import OutcomeWebhookConnector
from shared.stores.shopify import ShopifyConnector
from shared.stores.woocommerce import WooCommerceConnector

Factory = Callable[[StoreSettings], "StoreConnector | None"]

# source -> the factory of that store's own connector.
CONNECTORS: dict[str, Factory] = {
    keys.SHOPIFY: ShopifyConnector.from_settings,
    keys.WOOCOMMERCE: WooCommerceConnector.from_settings,
}

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
        own = {source: c for source, make in CONNECTORS.items() if (c := make(stores)) is not None}
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
