"""Session keys: one text key per (source, store order id) (DESIGN.md section 3).

Every table, timer, message, task name, console URL and Veriff `vendorData` names a session by
this one key (`verification_sessions.order_id`), so it must tell the sources apart: a
Lightspeed sale "123" and a generic store order "123" are two orders. The encoding is
injective and readable:

- a generic store order keeps its own id as its key (`123`; rows written before keys
  existed stay valid), and may not begin with a reserved prefix (`fields.order_id` refuses
  it, naming the field);
- a namespaced source's order is `<source>:<its id>` (`lightspeed:123`).

So a key that begins with a reserved prefix is that source's order, any other key is a generic
order, and no two (source, id) pairs share a key. The database holds the same rule
(`verification_sessions_key_source`, `shared.db.schema.KEY_MATCHES_SOURCE`). Adding a namespaced
source is one entry in `NAMESPACED` and a migration of that constraint (a generic order id
already stored with the new prefix would then read as the new source's: check before adding one).

What the store or staff see (emails, the refund API) is the store's own id, `ref(key).order_id`,
with `ref(key).source` where it matters.
"""

from __future__ import annotations

from dataclasses import dataclass

GENERIC = "orders"  # the generic order webhook's source name (`verification_sessions.source`)
LIGHTSPEED = "lightspeed"
SHOPIFY = "shopify"
WOOCOMMERCE = "woocommerce"
NAMESPACED = (LIGHTSPEED, SHOPIFY, WOOCOMMERCE)  # sources whose order ids are prefixed in the key
SEPARATOR = ":"
RESERVED_PREFIXES = tuple(f"{source}{SEPARATOR}" for source in NAMESPACED)


@dataclass(frozen=True)
class OrderRef:
    """An order as its store knows it: which source, and the id that source gave it."""

    source: str
    order_id: str


def session_key(source: str, store_order_id: str) -> str:
    """The key of `store_order_id` from `source`. ValueError for a generic id that would read
    as another source's (the inbound parser refuses those first, with a 422)."""
    if source in NAMESPACED:
        return f"{source}{SEPARATOR}{store_order_id}"
    if is_reserved(store_order_id):
        raise ValueError("a generic order id may not begin with a reserved source prefix")
    return store_order_id


def ref(key: str) -> OrderRef:
    """The inverse of `session_key`: the source and the store's own id of a key."""
    for source, prefix in zip(NAMESPACED, RESERVED_PREFIXES):
        if key.startswith(prefix):
            return OrderRef(source, key[len(prefix):])
    return OrderRef(GENERIC, key)


def is_reserved(store_order_id: str) -> bool:
    """Whether a generic order id begins with a namespaced source's prefix (and is refused)."""
    return store_order_id.startswith(RESERVED_PREFIXES)


def candidate_keys(text: str) -> list[str]:
    """The keys an operator may mean by `text`: the text itself as a key, and, for a bare id,
    each namespaced source's key for it (`123` → `123`, `lightspeed:123`)."""
    if is_reserved(text):
        return [text]
    return [text, *(session_key(source, text) for source in NAMESPACED)]
