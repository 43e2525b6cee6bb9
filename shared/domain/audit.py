"""The audit trail of reads (issue 24): who viewed, listed or searched which customer data.

Every console page and CLI command that shows an order, a list of sessions or a search result
records one `ReadEntry` before it returns the data. A searched email is never recorded: its keyed
hash is (`customers.email_key` with the pepper `CUSTOMER_KEY_SECRET`, the hash verify once and
`forget` use), so staff can later ask "who looked this customer up" by hashing the address the
same way, and a dump of the table names nobody.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from shared.domain import customers

DETAIL_MAX = 200  # the non-personal detail, cut to this
TERM_MAX = 200  # an order id searched for, cut to this


class ReadAction(StrEnum):
    VIEW_ORDER = "view_order"  # an order page, `status ORDER` (or what an order that opened no session recorded)
    LIST_SESSIONS = "list_sessions"  # a list of sessions without a search term (filters only)
    SEARCH = "search"  # a list searched by an order id or an email
    VIEW_AUDIT = "view_audit"  # the audit trail itself: who asked who looked at whom


@dataclass(frozen=True)
class ReadEntry:
    actor: str  # `operator:<IAP-verified email>` or `cli:<database user> (<--by>)`
    action: ReadAction
    order_id: str | None = None
    email_key: str | None = None
    detail: str = ""


def is_email(term: str) -> bool:
    """A search term that is an email (the list searches customers by it; anything else is an order id)."""
    return "@" in term


def email_target(pepper: bytes | None, email: str) -> str | None:
    """The keyed hash recorded for an email searched for; None without a pepper (then only
    "by email" is recorded, never the address)."""
    return customers.email_key(pepper, email) if pepper else None


def of_term(actor: str, action: ReadAction, term: str | None, pepper: bytes | None, detail: str = "") -> ReadEntry:
    """The entry of a read of `term` (an order id, or an email: hashed, never kept)."""
    term = (term or "").strip()
    if not term:
        return ReadEntry(actor, action, detail=detail[:DETAIL_MAX])
    if is_email(term):
        keyed = email_target(pepper, term)
        note = "by email" if keyed else "by email (not keyed: CUSTOMER_KEY_SECRET unset)"
        return ReadEntry(actor, action, email_key=keyed, detail=", ".join(p for p in (note, detail) if p)[:DETAIL_MAX])
    return ReadEntry(actor, action, order_id=term[:TERM_MAX], detail=detail[:DETAIL_MAX])


def pepper_of(key_secret: str | None) -> bytes | None:
    """The pepper of the email hash: CUSTOMER_KEY_SECRET whenever it is set (as `forget` reads
    it), whether verify once is on or not."""
    return key_secret.encode() if key_secret else None
