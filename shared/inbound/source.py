"""What every webhook source shares: the protocol, and reading a JSON body safely."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from shared.domain import fields as check
from shared.domain.jsonsafe import loads_guarded
from shared.domain.messages import InboundCommand
from shared.errors import InvalidField, Unparseable


class InboundSource(Protocol):
    """One webhook sender: where it posts, what it sends, and how its signature is checked.

    `verify` runs on the raw bytes before anything is parsed and returns the delivery id the
    signature carries (Standard Webhooks' `webhook-id`), or None; `parse` returns the command,
    or None for a delivery the service ignores without recording (e.g. an unpaid sale). `parse`
    is given the request's headers too, for a sender that names what it sends in a header
    (Shopify's `X-Shopify-Topic`, WooCommerce's `X-WC-Webhook-Topic`); only headers the signature
    covers, or that only pick what the signed body means, may be read there; a source that needs
    none ignores them. `content_type` is the body type accepted, or a tuple of them."""

    path: str
    content_type: str | tuple[str, ...]
    secret_variable: str  # the setting the source cannot run without

    def verify(self, headers: Mapping[str, str], body: bytes, now: datetime) -> str | None: ...

    def parse(self, body: bytes, delivery_id: str | None,
              headers: Mapping[str, str]) -> InboundCommand | None: ...


def json_object(raw: bytes | str, where: str = "body") -> dict[str, Any]:
    data = loads_guarded(raw, where=where)
    if not isinstance(data, dict):
        raise Unparseable(f"{where} must be a JSON object", field=where)
    return data


def nested(data: dict, name: str, field: str) -> dict[str, Any]:
    """An optional JSON object inside `data` ({} when absent)."""
    value = data.get(name)
    return {} if value is None else check.obj(value, field)


def coded(data: dict, field: str, codes: Mapping[int, Any], what: str) -> tuple[int, Any]:
    """(code, meaning) for an integer code that must be one of `codes`."""
    code = check.integer(data.get(field.rsplit(".", 1)[-1]), field, maximum=99999)
    if code not in codes:
        raise InvalidField(f"unknown {what} code {code}", field=field)
    return code, codes[code]
