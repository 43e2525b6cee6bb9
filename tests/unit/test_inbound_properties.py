"""Whatever a signed sender puts in a body, the parsers answer with a command whose text is clean
or a PermanentError (a 4xx) — never another exception (a 500). Issue 8 item 3.

A seeded generator (stdlib `random`, so every run checks the same cases) mutates bodies shaped
like each provider's with hostile values: NUL, lone surrogates, trailing newlines, huge and
non-finite numbers, wrong types, deep nesting."""

from __future__ import annotations

import json
import random
import re
from dataclasses import fields
from urllib.parse import urlencode

import pytest

from devstack.signing import lightspeed_sale, veriff_body, veriff_event_body
from shared import inbound
from shared.providers.veriff import inbound as veriff_inbound
from shared.errors import PermanentError

UNCLEAN = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
HOSTILE = [None, True, 0, -1, 10**30, -(10**60), 1e308, -1e-300, "", " ", "\n", "x\n", "\ud800", "a\x00b",
           "a@example.com\n", '"a,b"<x>@example.com', "1e999", "-139.80000", "9999999999.995", "NaN",
           "2019-07-26 17:31:40", "0001-01-01T00:00:00+14:00", "2100-01-01T00:00:00Z", "1967-02-29",
           "CLOSED", "VOIDED", [], {}, [[[]]], {"a": {"b": {}}}, "é" * 300]
ORDER = {"event": "order.created", "orderId": "A-1", "customerEmail": "a@example.com", "customerId": "c-1",
         "orderTotal": "12.50", "currency": "USD", "createdAt": "2026-11-29T10:00:00Z"}


def mutate(rng: random.Random, value, depth: int = 0):
    """`value` with some of its leaves (or keys' values) replaced by hostile ones."""
    if isinstance(value, dict) and depth < 4:
        out = {k: mutate(rng, v, depth + 1) for k, v in value.items() if rng.random() > 0.1}
        if rng.random() < 0.2:
            out[rng.choice(list(value) or ["x"])] = rng.choice(HOSTILE)
        return out
    if isinstance(value, list) and depth < 4:
        return [mutate(rng, v, depth + 1) for v in value]
    return rng.choice(HOSTILE) if rng.random() < 0.3 else value


def assert_clean(command) -> None:
    for f in fields(command) if command is not None else ():
        value = getattr(command, f.name)
        if isinstance(value, str):
            assert not UNCLEAN.search(value) and value == value.strip(), f.name


def check(parse, body: bytes) -> None:
    try:
        assert_clean(parse(body))
    except PermanentError:
        pass


def dumps(value) -> bytes:
    return json.dumps(value).encode("utf-8", "surrogatepass")


@pytest.mark.parametrize("seed", range(20))
def test_mutated_order_webhooks(seed):
    rng = random.Random(seed)
    for _ in range(40):
        check(lambda b: inbound.parse_order_webhook("msg_1", b), dumps(mutate(rng, ORDER)))


@pytest.mark.parametrize("seed", range(20))
def test_mutated_lightspeed_sales(seed):
    rng = random.Random(1000 + seed)
    for _ in range(40):
        sale = mutate(rng, lightspeed_sale("s-1", rng.choice(["CLOSED", "VOIDED", "AWAITING_PICKUP"])))
        form = {"payload": json.dumps(sale)}
        if rng.random() < 0.7:
            form["type"] = rng.choice(["sale.update", "product.update", "", "x\n"])
        check(inbound.parse_lightspeed, urlencode(form).encode())


@pytest.mark.parametrize("seed", range(20))
def test_mutated_veriff_webhooks(seed):
    rng = random.Random(2000 + seed)
    for _ in range(40):
        body = (json.loads(veriff_body("A-1", rng.choice([9001, 9102, 9103, 9104, 9121]), verification_id="v"))
                if rng.random() < 0.5 else json.loads(veriff_event_body("A-1", rng.choice([7001, 7002]))))
        check(veriff_inbound.parse_veriff, dumps(mutate(rng, body)))


@pytest.mark.parametrize("seed", range(10))
def test_random_bytes(seed):
    rng = random.Random(3000 + seed)
    for _ in range(50):
        body = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 120)))
        for parse in (veriff_inbound.parse_veriff, inbound.parse_lightspeed,
                      lambda b: inbound.parse_order_webhook("m", b)):
            check(parse, body)
