"""Parsing the providers' webhooks as they really send them (issue 10 items 3, 4 and 8).

Fixtures are built by devstack.signing in the real payloads' shapes: Veriff decisions with
`person.dateOfBirth` and microsecond `decisionTime`, Veriff event webhooks, X-Series
`sale.update` form bodies with `totals.total_price` strings and both date formats."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from decimal import Decimal
from urllib.parse import urlencode

import pytest

from devstack.signing import lightspeed_body, lightspeed_sale, veriff_body, veriff_event_body
from shared import inbound
from shared.providers.veriff import inbound as veriff_inbound
from shared.domain.messages import IgnoredDelivery, OrderPlaced, ProviderDecision, ProviderEvent, StoreCancelled
from shared.domain.model import ProviderEventKind
from shared.errors import InvalidField, Unparseable

PAID = ["CLOSED", "ONACCOUNT_CLOSED", "LAYBY_CLOSED", "DISPATCHED_CLOSED", "PICKED_UP_CLOSED",
        "SERVICE_CLOSED", "AWAITING_DISPATCH", "AWAITING_PICKUP"]


@pytest.mark.parametrize("status", PAID)
def test_every_paid_status_places_the_order(status):
    cmd = inbound.parse_lightspeed(lightspeed_body(lightspeed_sale("s-1", status, version=3)))
    assert isinstance(cmd, OrderPlaced)
    assert (cmd.order_id, cmd.event_id, cmd.order_total, cmd.customer_email) == (
        "lightspeed:s-1", f"s-1:{status}:3", Decimal("877.40"), "buyer@example.com")


def test_voided_cancels():
    cmd = inbound.parse_lightspeed(lightspeed_body(lightspeed_sale("s-1", "VOIDED", version=4)))
    assert cmd == StoreCancelled("lightspeed", "s-1:VOIDED:4", "lightspeed:s-1")


@pytest.mark.parametrize("status", ["SAVED", "ONACCOUNT", "LAYBY", "OPEN", "UNKNOWN"])
def test_unpaid_states_are_ignored(status):
    assert inbound.parse_lightspeed(lightspeed_body(lightspeed_sale("s-1", status))) is None


@pytest.mark.parametrize("sale", [
    lightspeed_sale("r-1", "CLOSED", return_for="5687606e-dbc9-8897-11e9-af192251e676", total="-139.80000"),
    lightspeed_sale("r-1", "CLOSED", return_for="5687606e-dbc9-8897-11e9-af192251e676", total="0.00000"),
    lightspeed_sale("r-1", "CLOSED", total="-139.80000"),
])
def test_a_return_opens_nothing(sale):
    cmd = inbound.parse_lightspeed(lightspeed_body(sale))
    assert isinstance(cmd, IgnoredDelivery) and cmd.reason == "return" and cmd.order_id == "lightspeed:r-1"


@pytest.mark.parametrize("email", [None, ""])
def test_a_walk_in_is_recorded_not_rejected(email):
    cmd = inbound.parse_lightspeed(lightspeed_body(lightspeed_sale("w-1", "CLOSED", email=email)))
    assert isinstance(cmd, IgnoredDelivery) and cmd.reason == "no_customer_email"


def test_a_body_with_only_payload_is_accepted():
    cmd = inbound.parse_lightspeed(lightspeed_body(lightspeed_sale("s-1", "CLOSED"), type_=None))
    assert isinstance(cmd, OrderPlaced)
    assert inbound.parse_lightspeed(lightspeed_body(lightspeed_sale("s-1"), type_="product.update")) is None


@pytest.mark.parametrize("sale_date, expected", [
    ("2019-07-26 17:31:40", datetime(2019, 7, 26, 17, 31, 40, tzinfo=timezone.utc)),
    ("2019-07-24T21:46:18Z", datetime(2019, 7, 24, 21, 46, 18, tzinfo=timezone.utc)),
])
def test_both_lightspeed_date_formats(sale_date, expected):
    cmd = inbound.parse_lightspeed(lightspeed_body(lightspeed_sale("s-1", sale_date=sale_date)))
    assert cmd.ordered_at == expected


@pytest.mark.parametrize("change, field", [
    ({"id": "s-1\n"}, "payload.id"),
    ({"status": None}, "payload.status"),
    ({"totals": {"total_price": "1e12"}}, "payload.totals.total_price"),
    ({"totals": "877.40"}, "payload.totals"),
    ({"sale_date": "0001-01-01T00:00:00+14:00"}, "payload.sale_date"),
    ({"customer": {"email": '"a,b"<x>@example.com'}}, "payload.customer.email"),
])
def test_bad_lightspeed_fields_are_named(change, field):
    with pytest.raises(InvalidField) as error:
        inbound.parse_lightspeed(lightspeed_body({**lightspeed_sale("s-1"), **change}))
    assert error.value.field == field


def test_lightspeed_payload_nested_too_deep_is_unparseable():
    body = urlencode({"type": "sale.update", "payload": "[" * 5000 + "]" * 5000}).encode()
    with pytest.raises(Unparseable):
        inbound.parse_lightspeed(body)


def test_veriff_approval_reads_date_of_birth_and_decision_time_but_never_shows_it():
    body = json.loads(veriff_body("A-1", 9001, verification_id="v-1", date_of_birth="1967-03-30",
                                  decision_time="2024-09-06T21:11:48.476108Z"))
    cmd = veriff_inbound.parse_veriff(json.dumps(body).encode())
    assert isinstance(cmd, ProviderDecision)
    assert cmd.birth_date == date(1967, 3, 30)
    assert cmd.decided_at == datetime(2024, 9, 6, 21, 11, 48, 476108, tzinfo=timezone.utc)
    assert "1967" not in repr(cmd)


@pytest.mark.parametrize("dob", [None, "", "30.03.1967", "1967-02-30", 1967, "1967-03-30T00:00:00"])
def test_veriff_approval_without_a_readable_date_of_birth_parses_with_none(dob):
    cmd = veriff_inbound.parse_veriff(veriff_body("A-1", 9001, date_of_birth=dob))
    assert cmd.birth_date is None


def test_veriff_approval_without_person_parses_with_none():
    body = json.loads(veriff_body("A-1", 9001))
    del body["verification"]["person"]
    assert veriff_inbound.parse_veriff(json.dumps(body).encode()).birth_date is None


@pytest.mark.parametrize("code, kind", [(7001, ProviderEventKind.STARTED), (7002, ProviderEventKind.SUBMITTED)])
def test_veriff_event_webhooks(code, kind):
    cmd = veriff_inbound.parse_veriff(veriff_event_body("A-1", code, verification_id="v-1", attempt_id="att-1"))
    assert cmd == ProviderEvent("veriff", f"v-1:{code}:att-1", "A-1", kind, "v-1")


@pytest.mark.parametrize("change, field", [
    ({"code": 7999}, "code"), ({"code": "7002"}, "code"), ({"vendorData": None}, "vendorData"),
    ({"id": "v-1\n"}, "id"), ({"vendorData": "A-\ud800"}, "vendorData"),
])
def test_bad_veriff_event_fields_are_named(change, field):
    body = {**json.loads(veriff_event_body("A-1", 7002)), **change}
    with pytest.raises(InvalidField) as error:
        veriff_inbound.parse_veriff(json.dumps(body).encode())
    assert error.value.field == field


@pytest.mark.parametrize("change, field", [
    ({"vendorData": "A-1\n"}, "verification.vendorData"),
    ({"decisionTime": "1970-01-01T00:00:00Z"}, "verification.decisionTime"),
    ({"code": 10**20}, "verification.code"),
    ({"reasonCode": "x"}, "verification.reasonCode"),
])
def test_bad_veriff_decision_fields_are_named(change, field):
    body = json.loads(veriff_body("A-1", 9102))
    body["verification"].update(change)
    with pytest.raises(InvalidField) as error:
        veriff_inbound.parse_veriff(json.dumps(body).encode())
    assert error.value.field == field


@pytest.mark.parametrize("body", [b'{"verification": ' * 100 + b"1" + b"}" * 100,
                                  b'{"code": ' + b"7" * 5000 + b"}"])
def test_veriff_hostile_json_is_unparseable(body):
    with pytest.raises(Unparseable):
        veriff_inbound.parse_veriff(body)


@pytest.mark.parametrize("order_id", ["X\n", "X\r\n", " X"])
def test_trailing_newline_is_not_a_second_order(order_id):
    body = json.dumps({"event": "order.created", "orderId": order_id, "customerEmail": "a@example.com"})
    with pytest.raises(InvalidField) as error:
        inbound.parse_order_webhook("m", body.encode())
    assert error.value.field == "orderId"


@pytest.mark.parametrize("email", ["x@example.com\n", '"a,b"<x>@example.com'])
def test_order_email_must_survive_parseaddr(email):
    body = json.dumps({"event": "order.created", "orderId": "A", "customerEmail": email})
    with pytest.raises(InvalidField) as error:
        inbound.parse_order_webhook("m", body.encode())
    assert error.value.field == "customerEmail"
