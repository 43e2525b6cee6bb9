"""LOCAL STACK ONLY: a stand-in for the provider's hosted page, where the emailed link leads.

A person picks a decision and a date of birth; the page sends the decision webhook to the
intake signed as Veriff signs it, for the provider session the link belongs to.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import flask
import requests
from werkzeug.exceptions import NotFound

from shared.config import ConsoleAuth
from shared.errors import TransientError
from shared.inbound.veriff import veriff_signature

DECISIONS = {"approved": 9001, "declined": 9102, "review": 9121, "resubmission_requested": 9103}


def decision_body(order_id: str, session_id: str, decision: str, date_of_birth: str, now: datetime) -> bytes:
    """Veriff's decision webhook for `session_id`, with the person's date of birth (the fields
    Veriff sends that the intake reads; production never imports `devstack`)."""
    verification = {
        "id": session_id, "code": DECISIONS[decision], "status": decision, "vendorData": order_id,
        "reason": None, "reasonCode": None,
        "decisionTime": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "person": {"dateOfBirth": date_of_birth or None},
    }
    return json.dumps({"status": "success", "verification": verification}).encode()


def send_decision(settings, order_id: str, session_id: str, decision: str, date_of_birth: str) -> tuple[int, dict]:
    """POST the signed decision to the local intake; its status and answer."""
    body = decision_body(order_id, session_id, decision, date_of_birth, datetime.now(timezone.utc))
    veriff = settings.inbound.veriff
    headers = {"X-HMAC-SIGNATURE": veriff_signature(veriff.shared_secret or "", body),
               "X-AUTH-CLIENT": veriff.api_key or "", "Content-Type": "application/json"}
    try:
        response = requests.post(f"{settings.console.local_intake_url.rstrip('/')}/webhooks/veriff", data=body,
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
    order_id = order_id_of(session_id)
    if order_id is None:
        raise NotFound("no order has this verification session (a newer link may have replaced it)")
    if request.method == "GET":
        return page.render("provider.html", order_id=order_id, session_id=session_id, decisions=DECISIONS,
                           sent=None)
    decision = request.form.get("decision", "")
    if decision not in DECISIONS:
        raise NotFound("pick one of the decisions")
    status, answer = send_decision(settings, order_id, session_id, decision, request.form.get("dob", ""))
    return page.render("provider.html", order_id=order_id, session_id=session_id, decisions=DECISIONS,
                       sent={"decision": decision, "status": status, "answer": answer.get("status", ""),
                             "detail": answer.get("detail", "")})
