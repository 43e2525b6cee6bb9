"""The service's own row and message ids: UUID version 7 (RFC 9562), time-ordered.

An event's id is the unique key of `event_log` (and a message's dedupe key downstream). A random
(version 4) id lands each insert on a random leaf of that index: once the index outgrows the
buffer cache every insert reads a cold page, and after each checkpoint the first change to each
of those pages writes it whole to the WAL again. A version 7 id starts with the time in
milliseconds, so the inserts of a moment share the index's rightmost pages, as a sequence's
would; 74 bits from the operating system's CSPRNG keep it unique and unguessable.
bench.event_ids measures the two kinds against each other."""

from __future__ import annotations

import os
import time


def new_id() -> str:
    """A fresh UUID version 7 in its canonical text: 48 bits of Unix time in milliseconds, the
    version (7), 12 random bits, the RFC 9562 variant (0b10), 62 random bits."""
    h = ((time.time_ns() // 1_000_000).to_bytes(6, "big") + os.urandom(10)).hex()
    # h: 12 hex digits of time, 20 random; the version replaces h[12], the variant h[16]'s top bits.
    return f"{h[:8]}-{h[8:12]}-7{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"
