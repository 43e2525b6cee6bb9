"""Validation at the edge (issue 10 item 8, issue 8 item 3): whole matches, clean text, bounded
numbers and times, guarded JSON — a clear error naming the field, never a crash."""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timezone
from decimal import Decimal
from email.utils import parseaddr

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.domain import fields, jsonsafe
from shared.domain.jsonsafe import loads_guarded
from shared.errors import InvalidField, Unparseable


@pytest.mark.parametrize("value", ["order-1\n", "order-1\r", "\norder-1", " order-1", "order\x00-1",
                                   "order-\ud800", "a\tb", "x" * 201])
def test_identifiers_are_matched_whole_and_clean(value):
    with pytest.raises(InvalidField) as error:
        fields.identifier(value, "orderId")
    assert error.value.field == "orderId"


def test_identifiers_accept_printable_text_and_integers():
    assert fields.identifier("Order #1 (ü)", "orderId") == "Order #1 (ü)"
    assert fields.identifier(12345678, "orderId") == "12345678"
    assert fields.identifier(None, "customerId", required=False) is None


@pytest.mark.parametrize("value", [
    "x@example.com\n", '"a,b"<x>@example.com', "Name <x@example.com>", "x@example", "x@@example.com",
    "x@exa mple.com", "x\x00@example.com", "x\ud800@example.com", "a" * 250 + "@example.com",
])
def test_emails_must_survive_parseaddr_unchanged(value):
    with pytest.raises(InvalidField) as error:
        fields.email(value, "customerEmail")
    assert error.value.field == "customerEmail"


def test_plain_addresses_pass():
    assert fields.email("first.last+tag@sub.example.co.uk", "e") == "first.last+tag@sub.example.co.uk"


@given(st.from_regex(fields._PLAIN_EMAIL, fullmatch=True).filter(lambda a: len(a) <= 254))
def test_plain_addresses_are_what_parseaddr_reads_back_unchanged(address):
    """`email` skips `parseaddr` for a plain address (the intake's speed): only where
    `parseaddr` and the general pattern would have let it through too."""
    assert parseaddr(address) == ("", address)
    assert fields._EMAIL.fullmatch(address)
    assert fields.email(address, "e") == address


@pytest.mark.parametrize("value", ["a..b@example.com", ".a@example.com", "a.@example.com", "a@example..com",
                                   "a@.example.com", "a@example.com.", "x(y)@example.com"])
def test_addresses_outside_the_plain_form_are_still_read_by_parseaddr(value):
    assert not fields._PLAIN_EMAIL.fullmatch(value)
    ok = fields._EMAIL.fullmatch(value) and parseaddr(value) == ("", value)
    if ok:
        assert fields.email(value, "e") == value
    else:
        with pytest.raises(InvalidField):
            fields.email(value, "e")


@pytest.mark.parametrize("value, expected", [
    ("877.40000", Decimal("877.40")), (42.5, Decimal("42.50")), (0, Decimal("0.00")),
    ("9999999999.994", Decimal("9999999999.99")), ("0.005", Decimal("0.01")),
])
def test_amounts_round_to_cents(value, expected):
    assert fields.amount(value, "orderTotal") == expected


@pytest.mark.parametrize("value", ["9999999999.995", "1e10", "1e999999999", "NaN", "Infinity", "-1",
                                   "x", True, [1], "1" * 41])
def test_amounts_that_do_not_fit_numeric_12_2_are_rejected(value):
    with pytest.raises(InvalidField) as error:
        fields.amount(value, "orderTotal")
    assert error.value.field == "orderTotal"


def test_negative_amounts_only_where_allowed():
    assert fields.amount("-139.80000", "total", allow_negative=True) == Decimal("-139.80")


@pytest.mark.parametrize("value, expected", [
    ("2019-07-26 17:31:40", datetime(2019, 7, 26, 17, 31, 40, tzinfo=timezone.utc)),
    ("2019-07-24T21:46:18Z", datetime(2019, 7, 24, 21, 46, 18, tzinfo=timezone.utc)),
    ("2019-07-24T21:46:25+00:00", datetime(2019, 7, 24, 21, 46, 25, tzinfo=timezone.utc)),
    ("2024-09-06T21:11:48.476108Z", datetime(2024, 9, 6, 21, 11, 48, 476108, tzinfo=timezone.utc)),
    ("2026-11-29T12:00:00+02:00", datetime(2026, 11, 29, 10, 0, tzinfo=timezone.utc)),
])
def test_timestamps_in_both_store_formats(value, expected):
    assert fields.timestamp(value, "createdAt") == expected


@pytest.mark.parametrize("value, expected", [
    ("2024-09-06T21:11:48.4761089Z", datetime(2024, 9, 6, 21, 11, 48, 476108, tzinfo=timezone.utc)),
    ("2024-09-06 21:11:48.123456789-05", datetime(2024, 9, 7, 2, 11, 48, 123456, tzinfo=timezone.utc)),
    ("2024-09-06T21:11+0530", datetime(2024, 9, 6, 15, 41, tzinfo=timezone.utc)),
])
def test_timestamps_past_six_fraction_digits_are_cut_and_every_offset_form_read(value, expected):
    assert fields.timestamp(value, "createdAt") == expected


def _read_as_before(value: str) -> datetime:
    """What `timestamp` did before Python read these forms itself: "Z" as +00:00, the fraction cut
    to six digits by hand."""
    cut = re.sub(r"(\.[0-9]{6})[0-9]+", r"\1", value).replace("Z", "+00:00")
    parsed = datetime.fromisoformat(cut)
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


@st.composite
def _times_in_range(draw) -> str:
    """Every form `_TIME` admits, as a store would write it: T or space, seconds or not, 0 to 9
    fraction digits, no offset, Z, or +HH, +HHMM, +HH:MM."""
    moment = draw(st.datetimes(datetime(2000, 1, 2), datetime(2099, 12, 30)))
    text = moment.strftime(f"%Y-%m-%d{draw(st.sampled_from('T '))}%H:%M")
    if draw(st.booleans()):
        text += moment.strftime(":%S")
        digits = draw(st.integers(0, 9))
        text += ("." + draw(st.text("0123456789", min_size=digits, max_size=digits))) if digits else ""
    hours, minutes = draw(st.integers(0, 14)), draw(st.sampled_from([0, 30, 45]))
    sign = draw(st.sampled_from("+-"))
    return text + draw(st.sampled_from(["", "Z", f"{sign}{hours:02}", f"{sign}{hours:02}{minutes:02}",
                                        f"{sign}{hours:02}:{minutes:02}"]))


@given(st.one_of(st.from_regex(fields._TIME, fullmatch=True), _times_in_range()))
def test_every_time_the_pattern_admits_reads_as_it_did(value):
    try:
        before = _read_as_before(value)
    except (ValueError, OverflowError):  # not a date (a 31st of February): refused, as before
        with pytest.raises(InvalidField):
            fields.timestamp(value, "createdAt")
        return
    if fields.EARLIEST <= before < fields.LATEST:
        assert fields.timestamp(value, "createdAt") == before
    else:
        with pytest.raises(InvalidField):
            fields.timestamp(value, "createdAt")


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+14:00", "1999-12-31T23:59:59Z",
                                   "2100-01-01T00:00:00Z", "9999-12-31", "today", "2026-11-29T10:00:00Z\n",
                                   "2026-02-30T00:00:00Z", -1e20, "2026W01"])
def test_timestamps_outside_2000_2100_or_malformed_are_rejected(value):
    with pytest.raises(InvalidField) as error:
        fields.timestamp(value, "createdAt")
    assert error.value.field == "createdAt"


@pytest.mark.parametrize("value, expected", [
    ("1967-03-30", date(1967, 3, 30)), (None, None), ("", None), ("1967-02-30", None),
    ("30/03/1967", None), ("1967-03-30\n", None), (19670330, None), ("0001-01-01", None),
])
def test_calendar_dates_are_read_or_none(value, expected):
    assert fields.calendar_date(value) == expected


@pytest.mark.parametrize("raw", [
    b"[" * 33 + b"]" * 33,
    b'{"a":' * 5000 + b"1" + b"}" * 5000,
    b"[" * 100000,
    b'{"orderTotal": ' + b"9" * 5000 + b"}",
    b'{"n": 1' + b"0" * 400 + b".5}",
    b'{"n": NaN}', b'{"n": -Infinity}',
    b"\xff\xfe", b"", b"{",
])
def test_guarded_decoder_refuses_without_crashing(raw):
    with pytest.raises(Unparseable):
        loads_guarded(raw)


@pytest.mark.parametrize("raw", [b'"' + b'\\"' * 100_000, b'"' + b'\\"' * 100_000 + b"\\"])
def test_an_unterminated_string_is_refused_in_linear_time(raw):
    """A body well under MAX_BODY_BYTES: the bracket count must not restart its string scan at
    every quote (quadratic: minutes of CPU for one request). Linear means one match from the
    first quote to the end, so no later quote is scanned from again."""
    assert [m.span() for m in jsonsafe._STRING.finditer(raw)] == [(0, len(raw))]
    with pytest.raises(Unparseable):
        loads_guarded(raw)


def test_guarded_decoder_reads_ordinary_json_and_ignores_brackets_in_strings():
    nested = {"a": [{"b": [1, 2, {"c": "[[[[{{{{"}]}]}
    assert loads_guarded(json.dumps(nested).encode()) == nested
    assert loads_guarded(b"[" * 32 + b"]" * 32) is not None


def test_only_a_body_with_more_brackets_than_max_depth_is_scanned_and_depth_is_still_exact():
    """Nesting is at most the count of opening brackets (those in strings included): a body
    with no more than MAX_DEPTH of them needs no scan; one with more is still measured exactly."""
    assert loads_guarded(b'{"s": "' + b"[" * 40 + b'"}') == {"s": "[" * 40}
    assert loads_guarded(b"[" * 16 + b"[]," * 20 + b"0" + b"]" * 16) is not None
    with pytest.raises(Unparseable, match="nested deeper"):
        loads_guarded(b"[" * 33 + b"]" * 33)
    assert loads_guarded('{"s": "\\"]]]"}') == {"s": '"]]]'}
