"""The verified-customer key (DESIGN.md 3b): who a returning customer is, without keeping who.

A key is HMAC-SHA256, with the pepper `CUSTOMER_KEY_SECRET`, of (source, the store's customer
id, the normalised email): account and email must both match, and another source's customer with
the same ids is another key. A second keyed hash of the email alone finds a customer's records
for `forget`. The pepper never reaches the database, so a dump alone cannot test a guessed
(id, email) against a key. A guest order (no customer id; WooCommerce's `0`) has no key.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from shared.domain import keys

_SEP = "\x1f"  # no field may contain it (fields.identifier / fields.email refuse control characters)
# A store's customer id that means "no account" (WooCommerce sends 0 for a guest).
GUEST_IDS = {keys.WOOCOMMERCE: frozenset({"0"})}


def normalise_email(email: str) -> str:
    """Lower-case, trimmed: the same mailbox typed in another case is the same customer."""
    return email.strip().lower()


def _mac(pepper: bytes, *parts: str) -> str:
    return hmac.new(pepper, _SEP.join(parts).encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class CustomerKeys:
    customer_key: str  # (source, customer id, email)
    email_key: str  # the email alone (forget)


def email_key(pepper: bytes, email: str) -> str:
    return _mac(pepper, "email", normalise_email(email))


def keys_for(pepper: bytes | None, source: str, customer_id: str | None, email: str | None) -> CustomerKeys | None:
    """The order's keys; None for a guest, without an email, or with verify once off (no pepper)."""
    if pepper is None or not email or not customer_id or not customer_id.strip():
        return None
    if customer_id.strip() in GUEST_IDS.get(source, ()):
        return None
    return CustomerKeys(_mac(pepper, "customer", source, customer_id.strip(), normalise_email(email)),
                        email_key(pepper, email))
