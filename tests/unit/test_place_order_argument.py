"""`place_order`'s argument (shared.db.sessions.argument): orjson writes the document json wrote,
for every kind of value the intake puts in it, and what orjson refuses json still writes."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.db.sessions import argument

JSON = json.JSONEncoder(default=str, separators=(",", ":")).encode

times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31),
                     timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=-5)), None]))
scalars = (st.none() | st.booleans() | st.integers(min_value=-2**63, max_value=2**63 - 1)
           | st.text() | times | st.decimals(allow_nan=False, allow_infinity=False, places=2))
documents = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                         | st.dictionaries(st.text(max_size=12), inner, max_size=6), max_leaves=30)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=12), documents, max_size=8))
def test_the_same_document_as_json_writes(params):
    assert json.loads(argument(params)) == json.loads(JSON(params))


def test_times_and_amounts_are_their_text_as_before():
    when = datetime(2026, 12, 7, 2, 21, 11, 123456, tzinfo=timezone.utc)
    params = {"ordered_at": when, "order_total": Decimal("12.30"), "at_second": when.replace(microsecond=0),
              "email": "ä@example.com", "n": None}
    assert argument(params) == ('{"ordered_at":"2026-12-07 02:21:11.123456+00:00","order_total":"12.30",'
                                '"at_second":"2026-12-07 02:21:11+00:00","email":"ä@example.com","n":null}')
    assert json.loads(argument(params)) == json.loads(JSON(params))


def test_what_orjson_refuses_is_written_as_json_writes_it():
    params = {"order_id": "a\ud800b", "big": 2**70}  # a lone surrogate; an integer past 64 bits
    assert argument(params) == JSON(params)


def _new_session_rows():
    from shared.domain.effects import Effects
    from shared.domain.model import Email, Event, TimerKind, TimerSpec

    when = datetime(2026, 12, 7, 2, 21, 11, 123456, tzinfo=timezone.utc)
    fx = Effects("order-ä", when, "req-1", actor="orders")
    fx.event(Event.ORDER_RECEIVED, provider="orders", event_id="ev-1")
    fx.email(Email.LINK)
    fx.schedule(TimerSpec(TimerKind.DEADLINE, 0, when + timedelta(hours=72), 1))
    fx.store_action("hold", ("shopify",))
    return {"events": fx.events, "timers": fx.timers, "outbox": fx.outbox, "store_actions": fx.store_actions}


def test_rows_are_written_as_the_json_records_of_their_fields():
    """The unit of work hands `place_order` its rows (dataclasses) as they are: each is the JSON
    object of its fields, in order, as `as_records` and json wrote them before."""
    from shared.domain.rows import as_records

    rows = _new_session_rows()
    params = {"order_id": "order-ä", "now": datetime(2026, 12, 7, tzinfo=timezone.utc), **rows}
    records = {**params, **{name: as_records(each) for name, each in rows.items()}}
    written = json.loads(argument(params))
    assert written == json.loads(JSON(records))
    for name, each in rows.items():  # every field, in its order
        assert [list(record) for record in written[name]] == [list(vars(row)) for row in each]
    assert list(written["events"][0]) == ["event_id", "order_id", "type", "occurred_at", "request_id", "actor",
                                          "data"]


def test_rows_beside_what_orjson_refuses_are_written_as_json_writes_their_records():
    from shared.domain.rows import as_records

    rows = _new_session_rows()
    params = {"order_id": "a\ud800b", **rows}
    assert argument(params) == JSON({**params, **{name: as_records(each) for name, each in rows.items()}})
