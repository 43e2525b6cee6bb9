"""One guarded JSON decoder for every input the service did not write itself.

`json.loads` raises RecursionError on deep nesting and ValueError on integers
over 4,300 digits, and accepts NaN/Infinity; none of that may escape as a 500.
"""

from __future__ import annotations

import json
import re
from typing import Any

from shared.errors import Unparseable

MAX_DEPTH = 32
MAX_NUMBER_CHARS = 40

# A string, or an unterminated one up to the end (possessive: each quote is scanned from once,
# never again from every quote inside it, which was quadratic in the body's size).
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")


def loads_guarded(raw: bytes | str, *, where: str = "body", max_depth: int = MAX_DEPTH) -> Any:
    """Decode JSON or raise Unparseable (a PermanentError) naming `where`."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    # Nesting cannot go deeper than the opening brackets in all (strings' included): only a
    # body with more of them than max_depth is scanned.
    if data.count(b"[") + data.count(b"{") > max_depth and _depth(data) > max_depth:
        raise Unparseable(f"{where} is nested deeper than {max_depth}", field=where)
    try:
        # json.loads(data, parse_int=..., ...), with the decoder made once rather than per call.
        return _DECODER.decode(data.decode(json.detect_encoding(data), "surrogatepass"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        # JSONDecodeError is a ValueError; so are the hooks' refusals.
        raise Unparseable(f"{where} is not valid JSON", field=where) from None


def _depth(data: bytes) -> int:
    depth = deepest = 0
    for match in _BRACKET.finditer(_STRING.sub(b'""', data)):
        depth += 1 if match.group() in (b"[", b"{") else -1
        deepest = max(deepest, depth)
    return deepest


def _integer(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise ValueError("integer too long")
    return int(text)


def _float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise ValueError("number too long")
    return float(text)


def _constant(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


_DECODER = json.JSONDecoder(parse_int=_integer, parse_float=_float, parse_constant=_constant)
