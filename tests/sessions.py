"""Leave a session as the email subscriber would: its provider session stored, its link email sent."""

from __future__ import annotations

from shared.db import claims, sessions


def bind_provider_session(db, order_id: str, session_id: str, provider: str = "veriff") -> None:
    """The provider session the link email created (decisions refer to it)."""
    with db.transaction() as conn:
        sessions.set_provider_session(conn, order_id, provider, session_id, f"https://{provider}.example/{session_id}")


def mark_link_sent(db, order_id: str) -> None:
    """The link email went out (only then may the deadline expire the session)."""
    assert claims.claim_email(db, order_id, "link", 0, lease_seconds=300) in ("claimed", "sent")
    with db.transaction() as conn:
        claims.finish_email(conn, order_id, "link", 0, "sent")
