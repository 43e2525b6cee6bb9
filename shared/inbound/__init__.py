"""Inbound webhooks (DESIGN.md section 4): one module per sender behind one protocol, found by path.

Every signature check runs on the exact bytes received, before anything is parsed. The
stores' senders are the stores table's (`shared.stores.registry.STORES`: a new store is its
line there, not one here); Veriff's is the one sender that is not a store.
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
from shared.inbound.veriff import VeriffSource, parse_veriff, parse_veriff_decision, verify_veriff
from shared.stores import registry  # the module, read when used (it imports the senders above)
from shared.stores.shopify import ShopifySource

NOT_STORES = (VeriffSource,)  # senders whose deliveries are not a store's orders


def sources() -> dict[str, Callable[[InboundSettings], InboundSource]]:
    """path -> the factory of the source posting there: each store's, then Veriff's."""
    senders = [store.source for store in registry.STORES.values()] + list(NOT_STORES)
    return {sender.path: sender.from_settings for sender in senders}


def source_for(path: str, settings: InboundSettings) -> InboundSource | None:
    """The source posting to `path`, bound to its secret; None for no such route.

    Raises RouteDisabled when the route's secret is not configured."""
    factory = sources().get(path)
    return factory(settings) if factory else None


__all__ = [
    "LIGHTSPEED_PAID", "NOT_STORES", "TIMESTAMP_TOLERANCE_SECONDS", "InboundCommand", "InboundSource",
    "LightspeedSource", "OrdersSource", "ShopifySource", "StoreCancelled", "VeriffSource", "parse_lightspeed",
    "parse_order_webhook", "parse_veriff", "parse_veriff_decision", "source_for", "sources", "verify_lightspeed",
    "verify_standard_webhook", "verify_veriff",
]
