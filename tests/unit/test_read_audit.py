"""The audit trail's entry of a read (issue 24): a searched email becomes its keyed hash, never itself."""

from __future__ import annotations

from shared.domain import audit, customers
from shared.domain.audit import ReadAction, ReadEntry

PEPPER = b"pepper"


def test_an_email_term_is_recorded_as_the_keyed_hash_forget_and_verify_once_use():
    entry = audit.of_term("operator:a@x.example", ReadAction.SEARCH, " Jo.Doe@Example.com ", PEPPER, "attention")
    assert entry == ReadEntry("operator:a@x.example", ReadAction.SEARCH, order_id=None,
                              email_key=customers.email_key(PEPPER, "jo.doe@example.com"),
                              detail="by email, attention")
    assert "doe" not in repr(entry).lower()


def test_without_a_pepper_an_email_search_is_recorded_without_the_address_or_a_key():
    entry = audit.of_term("cli:u (carol)", ReadAction.SEARCH, "jo@example.com", None)
    assert entry.email_key is None and entry.order_id is None and "jo" not in entry.detail
    assert entry.detail.startswith("by email (not keyed")


def test_an_order_term_is_recorded_as_typed_and_cut_and_no_term_is_a_plain_list():
    assert audit.of_term("x", ReadAction.SEARCH, "lightspeed:123", PEPPER).order_id == "lightspeed:123"
    assert len(audit.of_term("x", ReadAction.SEARCH, "9" * 1000, PEPPER).order_id) == audit.TERM_MAX
    plain = audit.of_term("x", ReadAction.LIST_SESSIONS, None, PEPPER, "overdue")
    assert (plain.order_id, plain.email_key, plain.detail) == (None, None, "overdue")


def test_the_pepper_is_the_customer_key_secret_whenever_it_is_set():
    assert audit.pepper_of("s3cret") == b"s3cret" and audit.pepper_of(None) is None and audit.pepper_of("") is None
