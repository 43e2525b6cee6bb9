"""Structured logging: one JSON object per line, in Cloud Logging's format.

Context (request id, function, order id, trace) lives in context variables,
bound by each entry point, so every line of a request carries it. Log
identifiers only: never payloads, emails or secrets.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import logging
import re
import sys
import traceback
from collections.abc import Iterator
from datetime import datetime, timezone

from shared import trace as tracing
from shared.config import Runtime

_labels: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("log_labels", default={})
_trace: contextvars.ContextVar[str | None] = contextvars.ContextVar("log_trace", default=None)

_SEVERITY = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARNING",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "CRITICAL",
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "severity": _SEVERITY.get(record.levelno, "DEFAULT"),
            "message": record.getMessage(),
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "logger": record.name,
        }
        labels = dict(_labels.get())
        labels.update(getattr(record, "labels", {}) or {})
        if labels:
            entry["logging.googleapis.com/labels"] = labels
        trace = _trace.get()
        context = tracing.current()
        if context is not None:
            entry["logging.googleapis.com/trace"] = trace or tracing.cloud_trace_name(context.trace_id, self.project)
            entry["logging.googleapis.com/spanId"] = context.span_id
            entry["logging.googleapis.com/trace_sampled"] = context.sampled
        elif trace:
            entry["logging.googleapis.com/trace"] = trace
        if record.exc_info and record.exc_info[1] is not None:
            entry["exception"] = describe_exception(record.exc_info[1])
            if record.levelno >= logging.ERROR:
                # What Error Reporting groups by: the stack in a Python traceback's shape,
                # as redacted as `exception` (classes and our own messages only).
                entry["@type"] = REPORTED_ERROR_EVENT
                entry["stack_trace"] = error_report_stack(record.exc_info[1])
                entry["serviceContext"] = {"service": str(labels.get("function") or "verification")}
        return json.dumps(entry, default=str)

    @functools.cached_property
    def project(self) -> str | None:
        return Runtime.from_env().project


REPORTED_ERROR_EVENT = "type.googleapis.com/google.devtools.clouderrorreporting.v1beta1.ReportedErrorEvent"


def error_report_stack(exc: BaseException) -> str:
    """The exception as Python prints it, for Error Reporting's parser, with the last line
    redacted as in `describe_exception` (the class, a SQLSTATE, a ServiceError's own text)."""
    stack = "".join(traceback.format_tb(exc.__traceback__)) if exc.__traceback__ else ""
    return f"Traceback (most recent call last):\n{stack}{_redacted_name(exc)}"


def _redacted_name(exc: BaseException) -> str:
    from shared.errors import ServiceError, sqlstate

    name = f"{type(exc).__module__}.{type(exc).__qualname__}".removeprefix("builtins.")
    if isinstance(exc, ServiceError):
        return f"{name}: {exc}"
    code = sqlstate(exc)
    return f"{name}: SQLSTATE {code}" if code else name


def describe_exception(exc: BaseException) -> str:
    """The chain of an exception with its stack, but without the messages of others' errors.

    A driver's or library's message can quote the data it choked on (PostgreSQL's
    `CONTEXT: JSON data, line 1: ...` quotes the row): only the class, the SQLSTATE
    and the service's own messages (which name fields, never values) are kept.
    """
    from shared.errors import ServiceError, sqlstate

    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        name = type(current).__qualname__
        if isinstance(current, ServiceError):
            name += f": {current}"
        else:
            code = sqlstate(current)
            if code:
                name += f" [SQLSTATE {code}]"
        stack = "".join(traceback.format_tb(current.__traceback__)) if current.__traceback__ else ""
        parts.append(f"{stack}{name}")
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return "\n-- caused by --\n".join(parts)



_OURS = ("functions", "shared", "devstack")


def configure() -> None:
    """One JSON handler on the root logger, whatever was installed before (idempotent).

    A plain stream handler someone else put there is removed: functions-framework installs
    one with LOG_EXECUTION_ID=true (by `logging.config.dictConfig`, which also disables the
    loggers that existed then), and it would print every line a second time, exception
    messages and all. Handlers of other kinds (a test's capture) are left alone."""
    root = logging.getLogger()
    foreign = [h for h in root.handlers
               if type(h) is logging.StreamHandler and not isinstance(h.formatter, JsonFormatter)]
    for handler in foreign:
        root.removeHandler(handler)
    for name, logger in logging.Logger.manager.loggerDict.items():
        if isinstance(logger, logging.Logger) and name.split(".")[0] in _OURS:
            logger.disabled = False
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers) and not foreign:
        return
    if not any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
    root.setLevel(Runtime.from_env().log_level)


@contextlib.contextmanager
def bound(trace: str | None = None, **labels: str | None) -> Iterator[None]:
    """Bind labels (and a trace) to every log line inside the block."""
    merged = dict(_labels.get())
    merged.update({k: str(v) for k, v in labels.items() if v is not None})
    label_token = _labels.set(merged)
    trace_token = _trace.set(trace) if trace is not None else None
    try:
        yield
    finally:
        _labels.reset(label_token)
        if trace_token is not None:
            _trace.reset(trace_token)


def bind(**labels: str | None) -> None:
    """Add labels to the current context (e.g. the order id once parsed)."""
    merged = dict(_labels.get())
    merged.update({k: str(v) for k, v in labels.items() if v is not None})
    _labels.set(merged)


_IDENTIFIER = re.compile(r"[A-Za-z0-9._:\-]{1,200}")


def identifier(value: object) -> str | None:
    """`value` when it looks like an id (fit for a log label), else None: labels never echo
    arbitrary input."""
    return value if isinstance(value, str) and _IDENTIFIER.fullmatch(value) else None
