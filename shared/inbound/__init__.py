"""Inbound webhooks (DESIGN.md section 4): one module per sender behind one protocol, found by path.

Every signature check runs on the exact bytes received, before anything is parsed. The
stores' senders are the stores table's (`shared.stores.registry.STORES`: a new store is its
line there, not one here); the ID providers' senders, which are not stores, are the providers
table's (`shared.providers.registry.PROVIDERS`).
"""

from __future__ import annotations

from collections.abc import Callable

from shared.config import InboundSettings
from shared.domain.messages import StoreCancelled
from shared.inbound.lightspeed import LIGHTSPEED_PAID, LightspeedSource, parse_lightspeed, verify_lightspeed
from shared.inbound.orders import (
    TIMESTAMP_TOLERANCE_SECONDS,
    OrdersSource,
    parse_order_webhook,
    verify_standard_webhook,
)
from shared.inbound.source import InboundCommand, InboundSource
from shared.stores import registry  # the module, read when used (it imports the senders above)
from shared.stores.shopify import ShopifySource


def not_stores() -> tuple:
    """The senders whose deliveries are not a store's orders: the ID providers' webhooks."""
    from shared.providers import registry as providers  # imported when used: its modules import this package

    return tuple(providers.sources())


def sources() -> dict[str, Callable[[InboundSettings], InboundSource]]:
    """path -> the factory of the source posting there: each store's, then each ID provider's."""
    senders = [store.source for store in registry.STORES.values()] + list(not_stores())
    return {sender.path: sender.from_settings for sender in senders}


def source_for(path: str, settings: InboundSettings) -> InboundSource | None:
    """The source posting to `path`, bound to its secret; None for no such route.

    Raises RouteDisabled when the route's secret is not configured."""
    factory = sources().get(path)
    return factory(settings) if factory else None


__all__ = [
    "LIGHTSPEED_PAID", "TIMESTAMP_TOLERANCE_SECONDS", "InboundCommand", "InboundSource",
    "LightspeedSource", "OrdersSource", "ShopifySource", "StoreCancelled", "not_stores", "parse_lightspeed",
    "parse_order_webhook", "source_for", "sources", "verify_lightspeed", "verify_standard_webhook",
]
