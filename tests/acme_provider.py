"""A test-only ID provider, "acme" (issue 22, item 5): what a new provider brings, in its own module,
and nothing else in the code base: its settings section, its webhook source with its code table,
its adapter (which creates a session and its link) and its signed local decision. The test
registers it with one line in the providers table (`shared.providers.registry.PROVIDERS`).

Its decision webhook posts JSON `{"session", "reference", "outcome", "born"}` to
`/webhooks/acme-id`, signed in `X-Acme-Id-Signature` (hex HMAC-SHA256 of the body with
ACME_ID_SECRET); `outcome` is its own code (1 approved, 2 declined, 3 review). `CREATED` stands in for its API
(the sessions it was asked to create, in order).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from shared.config import InboundSettings, ProviderSettings, _env, _Section
from shared.domain import fields as check
from shared.domain.messages import ProviderDecision
from shared.domain.model import Decision
from shared.errors import BadSignature, RouteDisabled
from shared.inbound.source import coded, json_object
from shared.ports import ProviderSession
from shared.providers.registry import Provider

NAME = "acme"
CREATED: list[tuple[str, str]] = []  # (session key, acme's session id)

# Its decision codes (`outcome`).
ACME_CODES = {1: Decision.APPROVED, 2: Decision.DECLINED, 3: Decision.REVIEW}


@dataclass(frozen=True)
class AcmeIdSettings(_Section):
    """Its settings section. A real provider hangs it on `ProviderSettings` (`acme: AcmeIdSettings
    = _section(AcmeIdSettings)` in shared/config.py) and its line takes it from there
    (`attrgetter("acme")`); this one reads itself."""

    secret: str | None = _env("ACME_ID_SECRET", secret=True)
    link_base: str = _env("ACME_ID_LINK_BASE", "https://id.acme.example/s")


def settings_of(providers: ProviderSettings) -> AcmeIdSettings:
    return AcmeIdSettings.from_env()


@dataclass(frozen=True)
class AcmeIdSource:
    secret: str = field(repr=False)
    path = "/webhooks/acme-id"
    content_type = "application/json"
    secret_variable = "ACME_ID_SECRET"

    @classmethod
    def from_settings(cls, settings: InboundSettings) -> AcmeIdSource:
        acme = AcmeIdSettings.from_env()
        if not acme.secret:
            raise RouteDisabled("Acme ID route disabled: ACME_ID_SECRET is not set")
        return cls(acme.secret)

    def verify(self, headers: Mapping[str, str], body: bytes, now: datetime) -> None:
        if not hmac.compare_digest((headers.get("X-Acme-Id-Signature") or "").encode(), sign(self.secret, body).encode()):
            raise BadSignature("X-Acme-Id-Signature does not match")

    def parse(self, body: bytes, delivery_id: str | None, headers: Mapping[str, str] | None = None) -> ProviderDecision:
        data = json_object(body)
        session_id = check.identifier(data.get("session"), "session")
        code, decision = coded(data, "outcome", ACME_CODES, "decision")
        return ProviderDecision(
            provider=NAME,
            event_id=f"{session_id}:{code}",
            order_id=check.identifier(data.get("reference"), "reference"),
            decision=decision,
            verification_id=session_id,
            code=code,
            reason_code=None,
            decided_at=None,
            birth_date=check.calendar_date(data.get("born")),
        )


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class AcmeIdAdapter:
    """Its `VerificationProvider`: a session per call, its link under `link_base`."""

    def __init__(self, settings: AcmeIdSettings) -> None:
        self._base = settings.link_base.rstrip("/")

    def create_session(self, order_id: str) -> ProviderSession:
        session_id = f"acme-{uuid.uuid4().hex[:12]}"
        CREATED.append((order_id, session_id))
        return ProviderSession(session_id=session_id, url=f"{self._base}/{session_id}")


def decision_body(order_id: str, session_id: str, outcome: int, born: str | None) -> bytes:
    return json.dumps({"session": session_id, "reference": order_id, "outcome": outcome, "born": born}).encode()


def local_decision(settings: AcmeIdSettings, order_id: str, session_id: str, decision: Decision,
                   date_of_birth: str | None, now: datetime) -> tuple[str, bytes, dict[str, str]]:
    """Its signed decision, as the local provider page sends it."""
    outcome = next(code for code, d in ACME_CODES.items() if d is decision)
    body = decision_body(order_id, session_id, outcome, date_of_birth)
    return AcmeIdSource.path, body, {"X-Acme-Id-Signature": sign(settings.secret or "", body),
                                     "Content-Type": "application/json"}


# Its line in `PROVIDERS` (the test sets it: `PROVIDERS["acme"] = LINE`).
LINE = Provider((AcmeIdSource,), settings_of, AcmeIdAdapter, local_decision)
