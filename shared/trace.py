"""One trace per order: the W3C trace context, carried by hand (no OpenTelemetry).

An entry point takes the context from its request (`traceparent`, else Cloud Run's
`X-Cloud-Trace-Context`), or from a Pub/Sub message's `traceparent` attribute, or starts a
fresh one (the webhook that begins an order's life); `activated` makes it current for the
request, with a span of its own. Every log line then carries the trace and span
(`shared.log`); every outbox row written meanwhile stores `traceparent()` (the Pub/Sub
message's attributes, the Cloud Task's request headers: `shared.domain.effects`), so the
timer, the subscribers and their own messages log under the same trace id. Standard
library only: the domain reads it.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

HEADER = "traceparent"  # also the Pub/Sub attribute's and the Cloud Task header's name
CLOUD_HEADER = "X-Cloud-Trace-Context"
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_CLOUD = re.compile(r"^([0-9a-fA-F]{32})(?:/(\d{1,20}))?(?:;o=([01]))?$")


@dataclass(frozen=True)
class TraceContext:
    trace_id: str  # 32 lowercase hex digits, never all zero
    span_id: str  # 16 lowercase hex digits: this request's own span
    sampled: bool = True

    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"

    def child(self) -> TraceContext:
        """The same trace, a new span (a request taking up its caller's context)."""
        return TraceContext(self.trace_id, new_span_id(), self.sampled)


_current: contextvars.ContextVar[TraceContext | None] = contextvars.ContextVar("trace_context", default=None)


def new_span_id() -> str:
    return os.urandom(8).hex()


def fresh() -> TraceContext:
    return TraceContext(os.urandom(16).hex(), new_span_id())


def parse_traceparent(value: object) -> TraceContext | None:
    """The context a W3C `traceparent` names (its span is the caller's), or None."""
    if not isinstance(value, str):
        return None
    match = _TRACEPARENT.match(value.strip())
    if not match or match[1] == "0" * 32 or match[2] == "0" * 16 or match[0].startswith("ff"):
        return None
    return TraceContext(match[1], match[2], bool(int(match[3], 16) & 1))


def parse_cloud(value: object) -> TraceContext | None:
    """`X-Cloud-Trace-Context: TRACE_ID/SPAN_ID;o=1` (the span id in decimal), or None."""
    if not isinstance(value, str):
        return None
    match = _CLOUD.match(value.strip())
    if not match or int(match[1], 16) == 0:
        return None
    span = int(match[2]) if match[2] else 0
    span_id = f"{span:016x}" if 0 < span < 2 ** 64 else new_span_id()
    return TraceContext(match[1].lower(), span_id, match[3] != "0")


def from_carrier(carrier: Mapping[str, str] | object) -> TraceContext | None:
    """The caller's context from request headers or message attributes (anything with .get)."""
    get = getattr(carrier, "get", None)
    if get is None:
        return None
    return parse_traceparent(get(HEADER)) or parse_cloud(get(CLOUD_HEADER))


def continued(carrier: Mapping[str, str] | object) -> TraceContext:
    """The caller's trace with a span of this request's own, or a fresh trace."""
    parent = from_carrier(carrier)
    return parent.child() if parent else fresh()


def current() -> TraceContext | None:
    return _current.get()


def traceparent() -> str | None:
    """What to send on: the current context as a `traceparent` value (None outside any)."""
    context = _current.get()
    return context.traceparent() if context else None


def cloud_trace_name(trace_id: str, project: str | None) -> str:
    """Cloud Logging's `logging.googleapis.com/trace` value."""
    return f"projects/{project}/traces/{trace_id}" if project else trace_id


@contextlib.contextmanager
def activated(context: TraceContext | None) -> Iterator[None]:
    """Make `context` current inside the block."""
    token = _current.set(context)
    try:
        yield
    finally:
        _current.reset(token)
