"""One JSON POST to a third-party API, as every HTTP adapter makes it (the ID provider's, SendGrid, the
store's refund API): no redirects followed (a redirect would carry the credentials in the
headers to wherever it points), and the answers that mean "try again later" -- none at all,
408, 429, any 5xx -- raised as TransientError. The caller judges every other status.
Errors carry the service's name and the status only: an API's error body may quote the
request, so it is never read into a message or a log line.
"""

from __future__ import annotations

import json
from typing import Any

import requests

from shared.errors import TransientError


def post_json(session: requests.Session, url: str, body: Any, *, headers: dict[str, str], timeout: float,
              service: str, component: str) -> requests.Response:
    """The response of a POST of `body` as JSON, unless it is worth retrying (TransientError)."""
    try:
        response = session.post(url, data=json.dumps(body), headers={**headers, "Content-Type": "application/json"},
                                timeout=timeout, allow_redirects=False)
    except requests.RequestException as exc:
        raise TransientError(f"{service} unreachable: {type(exc).__name__}", component=component) from exc
    if response.status_code in (408, 429) or response.status_code >= 500:
        raise TransientError(f"{service} answered {response.status_code}", component=component)
    return response
