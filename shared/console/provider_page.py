"""LOCAL STACK ONLY: a stand-in for the provider's hosted page, where the emailed link leads.

A person picks a decision and a date of birth; the page sends the decision webhook to the
intake, built and signed by the provider the link was created with (its `local_decision` in
`shared.providers.registry.PROVIDERS`; production never imports `devstack`), for the provider
session the link belongs to.
"""

from __future__ import annotations

from datetime import datetime, timezone

import flask
import requests
from werkzeug.exceptions import NotFound

from shared.config import ConsoleAuth
from shared.domain.model import Decision
from shared.errors import TransientError
from shared.providers import registry as providers

DECISIONS = {str(d): d for d in (Decision.APPROVED, Decision.DECLINED, Decision.REVIEW,
                                 Decision.RESUBMISSION_REQUESTED)}


def send_decision(settings, provider: str, order_id: str, session_id: str, decision: str,
                  date_of_birth: str) -> tuple[int, dict]:
    """POST `provider`'s signed decision to the local intake; its status and answer."""
    path, body, headers = providers.local_decision(settings.inbound.providers, provider, order_id, session_id,
                                                   DECISIONS[decision], date_of_birth, datetime.now(timezone.utc))
    try:
        response = requests.post(f"{settings.console.local_intake_url.rstrip('/')}{path}", data=body,
                                 headers=headers, timeout=10)
    except requests.RequestException as exc:
        raise TransientError("the local intake did not answer", component="intake") from exc
    try:
        answer = response.json()
    except ValueError:
        answer = {}
    return response.status_code, answer


def view(page, request: flask.Request, session_id: str, order_id_of) -> flask.Response:
    """GET: the choice; POST: send it and say what the intake answered."""
    settings = page.settings
    if settings.console.auth != ConsoleAuth.DEV or not settings.console.local_intake_url:
        raise NotFound("the provider page exists on local stacks only")
    found = order_id_of(session_id)  # (session key, provider), or None
    if found is None:
        raise NotFound("no order has this verification session (a newer link may have replaced it)")
    order_id, provider = found
    if request.method == "GET":
        return page.render("provider.html", order_id=order_id, session_id=session_id, decisions=DECISIONS,
                           sent=None)
    decision = request.form.get("decision", "")
    if decision not in DECISIONS:
        raise NotFound("pick one of the decisions")
    status, answer = send_decision(settings, provider, order_id, session_id, decision, request.form.get("dob", ""))
    return page.render("provider.html", order_id=order_id, session_id=session_id, decisions=DECISIONS,
                       sent={"decision": decision, "status": status, "answer": answer.get("status", ""),
                             "detail": answer.get("detail", "")})
