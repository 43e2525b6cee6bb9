"""Session keys: one text key per (source, store order id) (DESIGN.md section 3).

Every table, timer, message, task name, console URL and ID provider's `vendorData` names a session by
this one key (`verification_sessions.order_id`), so it must tell the sources apart: a
Lightspeed sale "123" and a generic store order "123" are two orders. The encoding is
injective and readable:

- a namespaced source's order is `<source>:<its id>` (`lightspeed:123`); a source's name is
  lower-case words (`SOURCE_NAME`);
- a generic store order keeps its own id as its key (`123`; rows written before keys existed
  stay valid), and that id may not begin like a namespaced key, a lower-case word and `:`
  (`PREFIX`, whichever word: `shared.inbound.orders` refuses it with a 422 naming `orderId`).

So a key that begins with `<word>:` is that source's order, any other key is a generic order,
and no two (source, id) pairs share a key. The database holds the same rule without naming any
source (`verification_sessions_key_source`, `shared.db.schema.KEY_MATCHES_SOURCE`, v16): a
generic key does not match `PREFIX`, any other source's key begins with `<source>:`. That is
why a new namespaced store needs no migration: the rule reserved every such prefix at once.

Which sources are namespaced is the stores table's say (`shared.stores.registry.STORES`, one
line per store), read when used (`namespaced()`): this module is below the stores' modules,
which import it, so it imports the table late, never at import. A generic id stored before
v16 that begins with `<word>:` (`inv:5`, then accepted) stays a generic key: `ref` reads it as
one while no store is named that word, and v16 keeps such rows valid (see its docstring); a
new store must not take a word such old ids use (check before adding one).

What the store or staff see (emails, the refund API) is the store's own id, `ref(key).order_id`,
with `ref(key).source` where it matters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

GENERIC = "orders"  # the generic order webhook's source name (`verification_sessions.source`)
LIGHTSPEED = "lightspeed"
SHOPIFY = "shopify"
WOOCOMMERCE = "woocommerce"
SEPARATOR = ":"
SOURCE_NAME = "[a-z][a-z0-9_]*"  # a namespaced source's name, and so its keys' prefix
PREFIX = re.compile(f"{SOURCE_NAME}{SEPARATOR}")  # what begins every namespaced key (matched at the start)


@dataclass(frozen=True)
class OrderRef:
    """An order as its store knows it: which source, and the id that source gave it."""

    source: str
    order_id: str


def namespaced() -> tuple[str, ...]:
    """The sources whose order ids are prefixed in the key: the stores table's namespaced lines."""
    from shared.stores import registry  # late: the table imports the stores' modules, which import this one
    return registry.namespaced()


def is_namespaced(source: str) -> bool:
    return source in namespaced()


def session_key(source: str, store_order_id: str) -> str:
    """The key of `store_order_id` from `source`. ValueError for a generic id that would read
    as a namespaced key (the inbound parser refuses those first, with a 422), or an unknown source."""
    if source == GENERIC:
        if is_reserved(store_order_id):
            raise ValueError("a generic order id may not begin with a source prefix (a lower-case word and ':')")
        return store_order_id
    if not is_namespaced(source):
        raise ValueError(f"{source!r} is not a source of the stores table")
    return f"{source}{SEPARATOR}{store_order_id}"


def ref(key: str) -> OrderRef:
    """The inverse of `session_key`: the source and the store's own id of a key."""
    source, separator, store_order_id = key.partition(SEPARATOR)
    if separator and source in namespaced():
        return OrderRef(source, store_order_id)
    return OrderRef(GENERIC, key)


def is_reserved(store_order_id: str) -> bool:
    """Whether a generic order id begins like a namespaced key (`<word>:`), and so is refused."""
    return PREFIX.match(store_order_id) is not None


def candidate_keys(text: str) -> list[str]:
    """The keys an operator may mean by `text`: the text itself as a key, and, for a bare id,
    each namespaced source's key for it (`123` → `123`, `lightspeed:123`)."""
    if is_reserved(text):
        return [text]
    return [text, *(session_key(source, text) for source in namespaced())]
