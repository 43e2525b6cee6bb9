"""A payload's field checks come from its resolved types (issue 22 item 4): a message of a new
type with a field of every supported type is delivered and handled, never acknowledged as
unparseable; a field of a type with no check fails where the class is defined."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from typing import Any, get_type_hints

import pytest
from cloudevents.http import from_http

from functions._cloudevent import subscriber
from shared.adapters.events import LocalPublisher
from shared.domain import messages
from shared.domain.messages import Payload
from shared.errors import InvalidField
from shared.handlers import registry
from shared.ports import OutgoingMessage


@dataclass(frozen=True)
class EveryField(Payload):
    order_id: str
    note: str | None
    count: int
    extra: int | None
    data: dict[str, Any]
    later: int | None = None


def test_the_probe_holds_every_supported_type():
    assert set(get_type_hints(EveryField).values()) - {type(None)} >= set(messages._FIELD_CHECKS)


def _event(data: dict):
    message = OutgoingMessage(topic="probe", data=json.dumps(data).encode(), ordering_key="o-1",
                              attributes={"type": "t", "order_id": "o-1", "request_id": "r", "message_key": "k"})
    headers, body = LocalPublisher(None, {}).build_event(message, uuid.uuid4().hex, datetime.now(timezone.utc))
    return from_http(headers, body)


@pytest.mark.parametrize("extra", [7, None])
def test_a_new_message_type_is_delivered_and_handled(app_env, monkeypatch, caplog, extra):
    handled = []
    monkeypatch.setitem(registry.HANDLERS, EveryField, lambda c, cmd, rid: handled.append((cmd, rid)) or "done")
    entry = subscriber("payload_probe", EveryField)
    body = {"v": 1, "order_id": "o-1", "note": None, "count": 3, "extra": extra, "data": {"a": [1]}}
    with caplog.at_level(logging.INFO, logger="functions"):
        entry(_event(body))
    assert handled == [(EveryField("o-1", None, 3, extra, {"a": [1]}), "r")]
    assert "handled: done" in caplog.text and "acknowledged" not in caplog.text
    assert EveryField.from_dict(handled[0][0].to_dict()) == handled[0][0]


@pytest.mark.parametrize("change", [{"extra": "7"}, {"extra": True}, {"later": -1}, {"count": None},
                                    {"data": []}, {"note": "a\nb"}])
def test_each_type_is_still_checked(change):
    body = {"v": 1, "order_id": "o-1", "note": None, "count": 3, "extra": None, "data": {}}
    with pytest.raises(InvalidField) as error:
        EveryField.from_dict({**body, **change})
    assert error.value.field == next(iter(change))


def test_a_field_type_without_a_check_fails_where_the_class_is_defined():
    with pytest.raises(TypeError, match="Unsupported.when"):
        @dataclass(frozen=True)
        class Unsupported(Payload):
            when: datetime
    with pytest.raises(TypeError, match="Unsupported.amounts"):
        @dataclass(frozen=True)
        class Unsupported(Payload):  # noqa: F811
            amounts: list[int]


def test_every_payload_in_the_domain_has_a_check_per_field():
    for payload in (messages.TimerPayload, messages.EventMessage, messages.EmailJob, messages.OrderAction):
        assert set(payload._checks) == {f.name for f in fields(payload)}
