"""Inbound webhooks (DESIGN.md section 4): one module per sender behind one protocol, found by path.

Every signature check runs on the exact bytes received, before anything is parsed.
Adding a store is one module with a source class and one line in `SOURCES`.
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
from shared.stores.shopify import ShopifySource
from shared.stores.woocommerce import WooCommerceSource

SOURCES: dict[str, Callable[[InboundSettings], InboundSource]] = {
    OrdersSource.path: OrdersSource.from_settings,
    LightspeedSource.path: LightspeedSource.from_settings,
    VeriffSource.path: VeriffSource.from_settings,
    ShopifySource.path: ShopifySource.from_settings,
    WooCommerceSource.path: WooCommerceSource.from_settings,
}


def source_for(path: str, settings: InboundSettings) -> InboundSource | None:
    """The source posting to `path`, bound to its secret; None for no such route.

    Raises RouteDisabled when the route's secret is not configured."""
    factory = SOURCES.get(path)
    return factory(settings) if factory else None


__all__ = [
    "LIGHTSPEED_PAID", "SOURCES", "TIMESTAMP_TOLERANCE_SECONDS", "InboundCommand", "InboundSource",
    "LightspeedSource", "OrdersSource", "ShopifySource", "StoreCancelled", "VeriffSource", "parse_lightspeed",
    "parse_order_webhook", "parse_veriff", "parse_veriff_decision", "source_for", "verify_lightspeed",
    "verify_standard_webhook", "verify_veriff",
]
