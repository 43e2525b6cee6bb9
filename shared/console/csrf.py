"""CSRF tokens: HMAC of the operator's identity and the time it was issued, valid for a working day.
And the seal of an action's outcome notice, so only the console's own redirect shows one."""

from __future__ import annotations

import hashlib
import hmac
import re
import time

from shared.errors import Forbidden

VALID_SECONDS = 12 * 3600
_ISSUED = re.compile(r"[0-9]{1,12}")  # ASCII digits int() reads (str.isdigit takes "²")


def _mac(secret: str, identity: str, issued: int) -> str:
    return hmac.new(secret.encode(), f"{identity}\x1f{issued}".encode(), hashlib.sha256).hexdigest()


def issue(secret: str, identity: str, now: float | None = None) -> str:
    issued = int(time.time() if now is None else now)
    return f"{issued}.{_mac(secret, identity, issued)}"


def check(secret: str, identity: str, token: str | None, now: float | None = None) -> None:
    """Forbidden unless `token` was issued to `identity` by this secret, recently."""
    issued, _, mac = (token or "").partition(".")
    current = time.time() if now is None else now
    if not _ISSUED.fullmatch(issued) or not 0 <= current - int(issued) <= VALID_SECONDS:
        raise Forbidden("missing or expired form token: reload the page and try again")
    if not hmac.compare_digest(mac.encode(), _mac(secret, identity, int(issued)).encode()):  # str: ASCII only
        raise Forbidden("form token does not belong to you: reload the page and try again")


def seal(secret: str, identity: str, *parts: str) -> str:
    """A MAC of an outcome notice's parts for `identity` (the redirect after an action)."""
    return hmac.new(secret.encode(), "\x1f".join(("notice", identity, *parts)).encode(), hashlib.sha256).hexdigest()


def sealed(secret: str, identity: str, mac: str | None, *parts: str) -> bool:
    """Whether `mac` seals these parts for `identity`: a crafted link shows no notice."""
    return hmac.compare_digest((mac or "").encode("utf-8", "replace"), seal(secret, identity, *parts).encode())
