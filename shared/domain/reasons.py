"""Why an operator acted: a code from a fixed list per action, never free text (issue 24).

The event log is never purged and every event is published on `verification-events` (and
exported from there), so what an event says must never hold a person's details. A free-text
reason invited names, dates of birth and licence numbers; a code cannot. What a code cannot say
goes in the optional note: at most NOTE_MAX characters, kept in the database only
(`operator_notes`, shown to staff on the order page), never in an event or a message, and
erased with the customer (forget, and retention's erasure of closed sessions).

`other` needs a note: the code alone would explain nothing.
"""

from __future__ import annotations

from enum import StrEnum

from shared.errors import PermanentError

NOTE_MAX = 200


class VerifyReason(StrEnum):
    """Why staff verified an order by hand."""

    ID_CHECKED_IN_STORE = "id_checked_in_store"  # staff saw photo ID at the till or at pickup
    ID_CHECKED_ON_DELIVERY = "id_checked_on_delivery"  # the courier checked photo ID at handover
    # the provider's own review approved; its decision never came
    PROVIDER_REVIEW_CONFIRMED = "provider_review_confirmed"
    RETURNING_CUSTOMER_CONFIRMED = "returning_customer_confirmed"  # verified on an earlier order staff found
    OTHER = "other"


class CancelReason(StrEnum):
    """Why staff cancelled a verification session (the order is told `cancelled`, never refunded by us)."""

    CUSTOMER_REQUEST = "customer_request"
    DUPLICATE_ORDER = "duplicate_order"
    FRAUD_SUSPECTED = "fraud_suspected"
    CANCELLED_IN_STORE = "cancelled_in_store"  # the store cancelled it; its cancellation never reached us
    TEST_ORDER = "test_order"
    OTHER = "other"


class RevokeReason(StrEnum):
    """Why staff removed a customer's verified-customer record (their next order asks again)."""

    DOCUMENT_DOUBT = "document_doubt"  # the document or the check behind the record is in doubt
    CHARGEBACK = "chargeback"
    SHARED_ACCOUNT = "shared_account"  # someone else orders on the account
    UNDERAGE_REPORTED = "underage_reported"
    CUSTOMER_REQUEST = "customer_request"
    OTHER = "other"


class RefundDoneReason(StrEnum):
    """How a refund was made by hand."""

    REFUNDED_IN_STORE_ADMIN = "refunded_in_store_admin"
    REFUNDED_AT_TILL = "refunded_at_till"  # the point of sale (Lightspeed's till)
    REFUNDED_BY_PAYMENT_PROVIDER = "refunded_by_payment_provider"
    REFUNDED_BY_BANK_TRANSFER = "refunded_by_bank_transfer"
    OTHER = "other"


class RefundFailedReason(StrEnum):
    """Why a refund by hand could not be made."""

    PAYMENT_METHOD_CLOSED = "payment_method_closed"
    PAYMENT_PROVIDER_REFUSED = "payment_provider_refused"
    CUSTOMER_UNREACHABLE = "customer_unreachable"
    ALREADY_REFUNDED_ELSEWHERE = "already_refunded_elsewhere"
    OTHER = "other"


# Each operator action that takes a reason: its codes, and whether one is required.
REASONS: dict[str, type[StrEnum]] = {
    "verify": VerifyReason,
    "cancel": CancelReason,
    "revoke": RevokeReason,
    "refund-done": RefundDoneReason,
    "refund-failed": RefundFailedReason,
}
REQUIRED = frozenset({"verify", "cancel", "revoke"})  # a refund's outcome says enough on its own
OTHER = "other"


class BadReason(PermanentError):
    """An unknown reason code, a missing one, or a note too long: the operator is told which."""

    status = 400
    code = "bad_reason"


def codes(action: str) -> tuple[str, ...]:
    """The codes `action` takes, in the order the console lists them (none: it takes no reason)."""
    return tuple(str(c) for c in REASONS.get(action, ()))


def reason(action: str, value: str | None, note: str | None = None) -> str | None:
    """`value` as one of `action`'s codes (None when the action needs none and none is given).
    BadReason names the field and the allowed codes."""
    value = (value or "").strip()
    allowed = codes(action)
    if not value:
        if action in REQUIRED:
            raise BadReason(f"{action} needs a reason code, one of: {', '.join(allowed)}", field="reason")
        return None
    if value not in allowed:
        listed = ", ".join(allowed) if allowed else "none (this action takes no reason)"
        raise BadReason(f"unknown reason code for {action}; allowed: {listed}", field="reason")
    if value == OTHER and not note:
        raise BadReason(f"reason {OTHER} needs a note saying why", field="note")
    return value


def clean_note(value: str | None) -> str | None:
    """The operator's note, trimmed (None when empty); BadReason past NOTE_MAX characters."""
    value = (value or "").strip()
    if len(value) > NOTE_MAX:
        raise BadReason(f"the note is {len(value)} characters; at most {NOTE_MAX}", field="note")
    return value or None
