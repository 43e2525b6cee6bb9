"""Field validators shared by every inbound parser and every internal payload.

Each raises InvalidField naming the field. Patterns are matched whole
(`re.fullmatch`: a trailing newline never passes), and text never carries NUL,
other control characters or unpaired surrogates (pg8000 fails half-way through
sending those).
"""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from email.utils import parseaddr
from typing import Any

from shared.errors import InvalidField

EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(2100, 1, 1, tzinfo=timezone.utc)
MAX_AMOUNT = Decimal("9999999999.99")  # Numeric(12, 2)
MAX_INT = 2**31 - 1  # PostgreSQL integer

_UNCLEAN = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
# A plain address (dot-atoms of letters, digits and `_%+-`): `parseaddr` reads every one of
# these back unchanged, so it need not be asked (it was a tenth of the intake's Python time).
_PLAIN_EMAIL = re.compile(r"[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+", re.ASCII)
_CURRENCY = re.compile(r"[A-Za-z]{3}", re.ASCII)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?", re.ASCII)
_CENT = Decimal("0.01")


def text(value: Any, field: str, *, required: bool = True, max_length: int = 200,
         numbers: bool = False) -> str | None:
    """A clean single-line string of 1..max_length characters, without surrounding spaces."""
    if value is None or value == "":
        if required:
            raise InvalidField(f"{field} is required", field=field)
        return None
    if numbers and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise InvalidField(f"{field} must be a string", field=field)
    if len(value) > max_length or _UNCLEAN.search(value) or value != value.strip():
        raise InvalidField(f"{field} has an invalid format", field=field)
    return value


def identifier(value: Any, field: str, *, required: bool = True) -> str | None:
    """An id (order, customer, session); integers are taken as their decimal text."""
    return text(value, field, required=required, numbers=True)


def email(value: Any, field: str) -> str:
    """An address `parseaddr` reads back unchanged (so mail goes where the store meant)."""
    address = text(value, field, max_length=254)
    if _PLAIN_EMAIL.fullmatch(address):
        return address
    if not _EMAIL.fullmatch(address) or parseaddr(address) != ("", address):
        raise InvalidField(f"{field} is not an email address", field=field)
    return address


def currency(value: Any, field: str) -> str | None:
    code = text(value, field, required=False, max_length=3)
    if code is None:
        return None
    if not _CURRENCY.fullmatch(code):
        raise InvalidField(f"{field} is not a currency code", field=field)
    return code.upper()


def amount(value: Any, field: str, *, allow_negative: bool = False) -> Decimal | None:
    """A money amount rounded to cents that fits Numeric(12, 2) after rounding."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)) or len(str(value)) > 40:
        raise InvalidField(f"{field} is not a number", field=field)
    try:
        number = Decimal(str(value).strip())
        if not number.is_finite():
            raise InvalidOperation
        rounded = number.quantize(_CENT, rounding=ROUND_HALF_UP)
    except InvalidOperation:
        raise InvalidField(f"{field} is not a number", field=field) from None
    if abs(rounded) > MAX_AMOUNT or (rounded < 0 and not allow_negative):
        raise InvalidField(f"{field} is out of range", field=field)
    return rounded


def timestamp(value: Any, field: str) -> datetime | None:
    """ISO 8601 (or `2019-07-26 17:31:40`, or Unix seconds), UTC when no offset, 2000..2100."""
    if value is None or value == "":
        return None
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            parsed = datetime.fromtimestamp(value, timezone.utc)
        elif isinstance(value, str) and _TIME.fullmatch(value):
            # Python 3.11+ reads "Z" and cuts a fraction past six digits itself (test_fields).
            parsed = datetime.fromisoformat(value)
        else:
            raise ValueError(field)
    except (ValueError, OverflowError, OSError):
        raise InvalidField(f"{field} is not an ISO 8601 time", field=field) from None
    parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    if not EARLIEST <= parsed < LATEST:
        raise InvalidField(f"{field} is outside 2000..2100", field=field)
    return parsed.astimezone(timezone.utc)


def calendar_date(value: Any) -> date | None:
    """`YYYY-MM-DD` as a date, or None when absent or unreadable (never an error: the
    caller decides what a missing date means)."""
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        return None
    try:
        parsed = date.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.year >= 1900 else None


def integer(value: Any, field: str, *, minimum: int = 0, maximum: int = MAX_INT) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise InvalidField(f"{field} must be an integer in {minimum}..{maximum}", field=field)
    return value


def obj(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidField(f"{field} must be a JSON object", field=field)
    return value
