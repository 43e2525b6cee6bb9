"""VerificationProvider implementations: Veriff's API, and a local stand-in.

Which one `make_verification_provider` picks:

- `VeriffClient` when VERIFF_API_KEY is set and VERIFF_BASE_URL is set to
  anything but `local`;
- `LocalVerificationProvider` otherwise (VERIFF_BASE_URL=local, or no key),
  whose links are `{LOCAL_VERIFY_URL}/<session id>`.

Note that VERIFF_BASE_URL defaults to Veriff's production host, so a process
with an API key and no VERIFF_BASE_URL talks to Veriff: local stacks and tests
set VERIFF_BASE_URL=local (or a fake server's URL).
"""

from __future__ import annotations

import logging
import uuid
from datetime import timezone
from urllib.parse import urlsplit

import requests

from shared.ports import Clock, ProviderSession, SystemClock, VerificationProvider
from shared.config import VeriffSettings
from shared.adapters.json_post import post_json
from shared.errors import ConfigError, PermanentError, TransientError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0
DEFAULT_LOCAL_VERIFY_URL = "http://127.0.0.1:8080/verify"
LOCAL = "local"

# Fixed namespace so the local session id of an order is the same in every run.
_LOCAL_NAMESPACE = uuid.UUID("6f1c1f0e-5d0b-4c59-9a55-3a4f1f2b7c11")


def make_verification_provider(settings: VeriffSettings) -> VerificationProvider:
    """The real Veriff client, or the local provider (rule in the module docstring) serving
    its verify page at `settings.local_verify_url` (e.g. `http://127.0.0.1:8080/verify`)."""
    base_url = (settings.base_url or "").strip()
    if settings.api_key and base_url and base_url.lower() != LOCAL:
        return VeriffClient(base_url, settings.api_key)
    if settings.on_cloud_run:  # customers would get http://127.0.0.1 links with predictable ids
        raise ConfigError("VERIFF_API_KEY", "is required on Cloud Run (the local stand-in serves local stacks only)")
    return LocalVerificationProvider(settings.local_verify_url)


class VeriffClient:
    """Creates Veriff verification sessions: `POST {base_url}/v1/sessions`.

    The request is the documented minimum plus `vendorData` (the order id,
    echoed back in decision webhooks) and a `timestamp`:
    `{"verification": {"vendorData": <order id>, "timestamp": <ISO 8601 UTC>}}`,
    authenticated with the `X-AUTH-CLIENT: <API key>` header.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        session: requests.Session | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._url = f"{base_url.rstrip('/')}/v1/sessions"
        self._api_key = api_key
        self._timeout = timeout
        self._session = session or requests.Session()
        self._clock = clock or SystemClock()

    def __repr__(self) -> str:
        return f"VeriffClient(url={self._url!r})"

    def create_session(self, order_id: str) -> ProviderSession:
        """Open a session whose vendorData is `order_id`.

        Raises TransientError on 429/5xx, 401/403 (our key), 404/3xx (our base URL), no answer,
        or an unreadable success body; PermanentError on any other refusal (a bad request).
        """
        now = self._clock.now().astimezone(timezone.utc)
        body = {
            "verification": {
                "vendorData": order_id,
                "timestamp": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            }
        }
        response = post_json(self._session, self._url, body, headers={"X-AUTH-CLIENT": self._api_key},
                             timeout=self._timeout, service="Veriff", component="veriff")
        status = response.status_code
        if status in (401, 403):  # our key (rotated, revoked), not this order: a fixed key opens the backlog
            raise TransientError(f"Veriff refused our credentials ({status})", component="veriff")
        if status == 404 or 300 <= status < 400:  # VERIFF_BASE_URL, not this order (redirects are not followed)
            raise TransientError(f"Veriff answered {status}: check VERIFF_BASE_URL", component="veriff")
        if not 200 <= status < 300:
            raise PermanentError(f"Veriff refused to create a session ({status})")
        session = _parse_session(response)
        log.info("verification session created", extra={"labels": {"verification_id": session.session_id}})
        return session


class LocalVerificationProvider:
    """LOCAL STACK ONLY: a deterministic fake session, `{base_url}/<id>`.

    `base_url` is the local verify page, e.g. `http://127.0.0.1:8080/verify`,
    so links look like `http://127.0.0.1:8080/verify/<id>`.

    The id is a UUID derived from the order id, so asking twice for the same
    order gives the same session (as a page at that URL on the local stack can
    rely on). Nothing is called.
    """

    def __init__(self, base_url: str = DEFAULT_LOCAL_VERIFY_URL) -> None:
        self._base_url = base_url.rstrip("/")

    def create_session(self, order_id: str) -> ProviderSession:
        """A fake session for `order_id`; never fails."""
        session_id = str(uuid.uuid5(_LOCAL_NAMESPACE, order_id))
        return ProviderSession(session_id=session_id, url=f"{self._base_url}/{session_id}")


def _parse_session(response: requests.Response) -> ProviderSession:
    # A 2xx without a usable body is Veriff (or a proxy before it) misbehaving,
    # not a fault in our request: retry.
    try:
        payload = response.json()
        session_id, url = payload["verification"]["id"], payload["verification"]["url"]
    except (ValueError, KeyError, TypeError):
        payload, session_id, url = None, None, None
    usable = (
        isinstance(payload, dict)
        and payload.get("status") == "success"
        and isinstance(session_id, str) and session_id
        and isinstance(url, str) and _is_https(url)
    )
    if not usable:
        raise TransientError("Veriff answered without a session id and https url", component="veriff")
    return ProviderSession(session_id=session_id, url=url)


def _is_https(url: str) -> bool:
    # The url is stored and emailed to the customer: only ever Veriff's own https page.
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return False
    return parts.scheme == "https" and bool(parts.netloc)
