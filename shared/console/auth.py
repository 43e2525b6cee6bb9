"""Who is asking: the Identity-Aware Proxy's signed assertion, or (local stacks only) a fixed dev identity.

IAP signs `X-Goog-IAP-JWT-Assertion` with ES256; its public keys (a JSON object of key id →
PEM) are fetched on first use and cached. Nothing else lets a request in.

The dev identity needs what only the local user has: the token in the URL the local stack
printed (`?dev_token=`), exchanged once for a cookie. A tunnel to 127.0.0.1 (`ssh -R`, ngrok
TCP) adds no header and lets its client choose the Host, so the checks of where a request came
from cannot catch it; the token does.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import requests
from google.auth import jwt

from shared.config import ConsoleAuth, ConsoleSettings
from shared.errors import ConfigError, Forbidden, TransientError, Unauthorized

log = logging.getLogger(__name__)

IAP_HEADER = "X-Goog-IAP-JWT-Assertion"
IAP_ISSUER = "https://cloud.google.com/iap"
DEV_IDENTITY = "dev@localhost"
DEV_TOKEN_PARAMETER = "dev_token"  # in the URL devstack.run prints: `/sessions?dev_token=...`
DEV_COOKIE = "console_dev"
KEYS_TTL_SECONDS = 3600
REFETCH_AFTER_SECONDS = 60  # an unknown key id refetches at most this often
CLOCK_SKEW_SECONDS = 30


def _fetch_keys(url: str) -> dict[str, str]:
    """Key id → PEM, from an https URL or (tests, air-gapped setups) a `file:` path."""
    if url.startswith("file:"):
        return json.loads(Path(url.removeprefix("file:")).read_text())
    try:
        response = requests.get(url, timeout=5)
        response.raise_for_status()
        return response.json()
    except (requests.RequestException, ValueError) as exc:
        raise TransientError("IAP public keys unavailable", component="iap-keys") from exc


class PublicKeys:
    """IAP's public keys, cached per instance; an unknown key id triggers one refetch."""

    def __init__(self, url: str, fetch: Callable[[str], dict[str, str]] = _fetch_keys) -> None:
        self._url, self._fetch = url, fetch
        self._keys: dict[str, str] = {}
        self._fetched_at = float("-inf")
        self._lock = threading.Lock()

    def get(self, key_id: str) -> str | None:
        with self._lock:
            age = time.monotonic() - self._fetched_at
            if age > KEYS_TTL_SECONDS or (key_id not in self._keys and age > REFETCH_AFTER_SECONDS):
                self._keys = dict(self._fetch(self._url))
                self._fetched_at = time.monotonic()
            return self._keys.get(key_id)


def verify_iap(assertion: str | None, *, audience: str, keys: PublicKeys) -> str:
    """The verified email in an IAP assertion; Unauthorized for anything else."""
    if not assertion:
        raise Unauthorized("no IAP assertion: reach the console through Identity-Aware Proxy")
    try:
        header = jwt.decode_header(assertion)
    except (ValueError, TypeError) as exc:
        raise Unauthorized("malformed IAP assertion") from exc
    key = keys.get(str(header.get("kid"))) if header.get("alg") == "ES256" else None
    if key is None:
        raise Unauthorized("IAP assertion not signed by a known IAP key")
    try:
        claims = jwt.decode(assertion, certs={header["kid"]: key}, audience=audience,
                            clock_skew_in_seconds=CLOCK_SKEW_SECONDS)
    except (ValueError, TypeError) as exc:
        raise Unauthorized("IAP assertion refused (signature, audience or time)") from exc
    email = claims.get("email")
    email = email.removeprefix("accounts.google.com:") if isinstance(email, str) else ""
    if claims.get("iss") != IAP_ISSUER or not email:
        raise Unauthorized("IAP assertion has the wrong issuer or no email")
    return email


def _loopback(host: str | None) -> bool:
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


# What a forwarder on this machine adds (nginx, ngrok, a load balancer, a tunnel's proxy): a
# request that went through one came from elsewhere, whatever its socket says.
FORWARDING_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-IP",
                      "Via", "CF-Connecting-IP", "True-Client-IP", "X-Client-IP", "X-Original-URL")


def _from_this_machine(remote_addr: str | None, host: str, headers) -> None:
    """Forbidden unless the request came from and to this machine, not through a forwarder that
    says so (a plain TCP tunnel passes: the token catches it)."""
    server = host.rsplit(":", 1)[0].strip("[]")
    if not _loopback(remote_addr) or not (server == "localhost" or _loopback(server)):
        raise Forbidden("the dev identity serves 127.0.0.1 only")
    if headers is not None and any(headers.get(name) is not None for name in FORWARDING_HEADERS):
        raise Forbidden("the dev identity serves 127.0.0.1 only, not requests forwarded to it")


_SIGN_IN = "Open the console URL the local stack printed when it started (it signs this browser in)."


def dev_cookie_of(token: str) -> str:
    """What the sign-in cookie holds: a keyed hash of the token, so the cookie jar never holds
    the token itself."""
    return hmac.new(token.encode(), b"operator console dev sign-in", hashlib.sha256).hexdigest()


def dev_sign_in(remote_addr: str | None, host: str, headers, given: str, token: str) -> str:
    """`?dev_token=` on a GET: the cookie's value when `given` is the token (compared in constant
    time); Forbidden otherwise, saying where the right URL is and never what was given."""
    _from_this_machine(remote_addr, host, headers)
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise Forbidden(f"this sign-in link is not the local stack's. {_SIGN_IN}")
    return dev_cookie_of(token)


def dev_identity(remote_addr: str | None, host: str, headers, cookie: str | None, token: str | None, *,
                 customer_page: bool = False) -> str:
    """CONSOLE_AUTH=dev: a fixed identity for requests from and to this machine that carry the
    sign-in cookie; `customer_page`, the provider stand-in page a customer's emailed link opens
    (in a browser never signed in), asks no cookie."""
    _from_this_machine(remote_addr, host, headers)
    if not customer_page and not (token and hmac.compare_digest((cookie or "").encode(),
                                                                dev_cookie_of(token).encode())):
        raise Forbidden(f"this browser is not signed in to the local console. {_SIGN_IN}")
    return DEV_IDENTITY


# What a request needs: to read (viewers and operators), to act (operators), to verify an
# order's age by hand (operators, or only CONSOLE_VERIFIERS when that list is set).
VIEW, ACT, VERIFY = "view", "act", "verify"


def listed(email: str, entries: tuple[str, ...]) -> bool:
    """`email` is on the list: by itself, or by its exact domain (`domain:example.com`)."""
    email = email.strip().lower()
    return any(entry == email or entry == f"domain:{email.rpartition('@')[2]}" for entry in entries)


def require_allowlist(console: ConsoleSettings) -> None:
    """Behind IAP the console needs its own list: IAP admitting someone is not enough."""
    if console.auth == ConsoleAuth.IAP and not (console.operators or console.viewers):
        raise ConfigError("CONSOLE_OPERATORS", "is required with CONSOLE_AUTH=iap (CONSOLE_VIEWERS beside it): "
                          "who may use the console")


def authorize(email: str, console: ConsoleSettings, need: str) -> None:
    """Forbidden unless `email` may do what `need` says. The local dev identity is an operator."""
    if console.auth == ConsoleAuth.DEV:
        return
    require_allowlist(console)
    operator = listed(email, console.operators)
    allowed = {VIEW: operator or listed(email, console.viewers), ACT: operator,
               VERIFY: operator and (not console.verifiers or listed(email, console.verifiers))}[need]
    if not allowed:
        what = {VIEW: "use the console", ACT: "act on orders", VERIFY: "verify an order by hand"}[need]
        raise Forbidden(f"you may not {what}: ask for your address to be added to the console's list")
