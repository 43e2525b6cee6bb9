"""Veriff's decision and event webhooks (DESIGN.md section 4), its code tables, and its signed
decision as the local provider page sends it (`local_decision`)."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.config import InboundSettings, VeriffSettings
from shared.domain import fields as check
from shared.domain.messages import ProviderDecision, ProviderEvent
from shared.domain.model import Decision, ProviderEventKind
from shared.errors import BadSignature, RouteDisabled
from shared.inbound.source import coded, json_object, nested

NAME = "veriff"  # its line in `shared.providers.registry.PROVIDERS`, its deliveries' `provider`

# Veriff's decision codes (`verification.code`).
VERIFF_CODES = {
    9001: Decision.APPROVED,
    9102: Decision.DECLINED,
    9103: Decision.RESUBMISSION_REQUESTED,
    9104: Decision.EXPIRED,  # Veriff uses 9104 for both expired and abandoned
    9121: Decision.REVIEW,
}
# Veriff's event webhooks, by `code`.
VERIFF_EVENT_CODES = {7001: ProviderEventKind.STARTED, 7002: ProviderEventKind.SUBMITTED}


@dataclass(frozen=True)
class VeriffSource:
    shared_secret: str = field(repr=False)
    api_key: str | None = field(default=None, repr=False)
    path = "/webhooks/veriff"
    content_type = "application/json"
    secret_variable = "VERIFF_SHARED_SECRET"

    @classmethod
    def from_settings(cls, settings: InboundSettings) -> VeriffSource:
        veriff = settings.providers.veriff
        if not veriff.shared_secret:  # a deployment whose ID_PROVIDER is another one, without Veriff's
            raise RouteDisabled("Veriff route disabled: VERIFF_SHARED_SECRET is not set")
        return cls(veriff.shared_secret, veriff.api_key)

    def verify(self, headers: Mapping[str, str], body: bytes, now: datetime) -> None:
        verify_veriff(self.shared_secret, headers.get("X-HMAC-SIGNATURE"), body)
        client = headers.get("X-AUTH-CLIENT", "")
        if self.api_key and not hmac.compare_digest(client.encode(), self.api_key.encode()):
            raise BadSignature("X-AUTH-CLIENT does not match the API key")

    def parse(self, body: bytes, delivery_id: str | None,
              headers: Mapping[str, str] | None = None) -> ProviderDecision | ProviderEvent:
        return parse_veriff(body)


def veriff_signature(secret: str, body: bytes) -> str:
    """`X-HMAC-SIGNATURE` as Veriff sends it: lowercase hex HMAC-SHA256 of the body."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_veriff(secret: str, header: str | None, body: bytes) -> None:
    """`X-HMAC-SIGNATURE`: lowercase hex HMAC-SHA256 of the body."""
    if not header:
        raise BadSignature("missing X-HMAC-SIGNATURE")
    expected = veriff_signature(secret, body)
    if not hmac.compare_digest(header.strip().lower().encode(), expected.encode()):
        raise BadSignature("X-HMAC-SIGNATURE does not match")


def parse_veriff(body: bytes) -> ProviderDecision | ProviderEvent:
    """A decision webhook (it has `verification`) or an event webhook (`code` 7001/7002)."""
    data = json_object(body)
    if "verification" in data:
        return _veriff_decision(data)
    return _veriff_event(data)


def parse_veriff_decision(body: bytes) -> ProviderDecision:
    return _veriff_decision(json_object(body))


def _veriff_decision(data: dict[str, Any]) -> ProviderDecision:
    verification = check.obj(data.get("verification"), "verification")
    verification_id = check.identifier(verification.get("id"), "verification.id")
    order_id = check.identifier(verification.get("vendorData"), "verification.vendorData")
    code, decision = coded(verification, "verification.code", VERIFF_CODES, "decision")
    status = check.text(verification.get("status"), "verification.status", required=False)
    if decision is Decision.EXPIRED and status == "abandoned":
        decision = Decision.ABANDONED
    decision_time = check.text(verification.get("decisionTime"), "verification.decisionTime",
                               required=False, max_length=40)
    reason_code = verification.get("reasonCode")
    person = nested(verification, "person", "verification.person")
    return ProviderDecision(
        provider=NAME,
        event_id=f"{verification_id}:{code}:{decision_time or ''}",
        order_id=order_id,
        decision=decision,
        verification_id=verification_id,
        code=code,
        reason_code=check.integer(reason_code, "verification.reasonCode", maximum=99999)
        if reason_code is not None else None,
        decided_at=check.timestamp(decision_time, "verification.decisionTime"),
        birth_date=check.calendar_date(person.get("dateOfBirth")),
    )


def _veriff_event(data: dict[str, Any]) -> ProviderEvent:
    verification_id = check.identifier(data.get("id"), "id")
    code, kind = coded(data, "code", VERIFF_EVENT_CODES, "event")
    attempt_id = check.identifier(data.get("attemptId"), "attemptId", required=False)
    check.text(data.get("action"), "action", required=False)
    return ProviderEvent(
        provider=NAME,
        event_id=f"{verification_id}:{code}:{attempt_id or ''}",
        order_id=check.identifier(data.get("vendorData"), "vendorData"),
        kind=kind,
        verification_id=verification_id,
    )


def local_decision(settings: VeriffSettings, order_id: str, session_id: str, decision: Decision,
                   date_of_birth: str | None, now: datetime) -> tuple[str, bytes, dict[str, str]]:
    """LOCAL STACK ONLY (the console's provider page): Veriff's decision webhook for `session_id`,
    with the person's date of birth (the fields Veriff sends that the intake reads), signed as
    Veriff signs it: its path, body and headers."""
    code = next(c for c, d in VERIFF_CODES.items() if d is decision)
    verification = {
        "id": session_id, "code": code, "status": str(decision), "vendorData": order_id,
        "reason": None, "reasonCode": None,
        "decisionTime": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "person": {"dateOfBirth": date_of_birth or None},
    }
    body = json.dumps({"status": "success", "verification": verification}).encode()
    headers = {"X-HMAC-SIGNATURE": veriff_signature(settings.shared_secret or "", body),
               "X-AUTH-CLIENT": settings.api_key or "", "Content-Type": "application/json"}
    return VeriffSource.path, body, headers
