"""The local stack's console: the functions' JSON log lines told as a story.

In the cloud every line is a JSON object for Cloud Logging. Here a person watches a terminal,
so each order's lifecycle steps (logger `story`: order received, link sent, verified, expired,
refund requested, ...) and what the sweeper did (only when it did something) are printed as
one short line each, with warnings and errors; routine lines (`answered 200`, `handled: ...`)
are left out. With `LOCAL_LOG=json` the run command passes every line on as it came, unread. Nothing is added to what the
functions logged: they log identifiers only, never emails, dates of birth, payloads or secrets.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterable
from datetime import datetime
from typing import TextIO

SHOWN_INFO = {"story", "functions.sweep"}  # the loggers whose INFO lines tell the story
_SHOWN_SEVERITY = {"WARNING", "ERROR", "CRITICAL"}


class Console:
    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self._lock = threading.Lock()

    def pump(self, function: str, lines: Iterable[str]) -> None:
        """Render every line a function writes to stdout until it closes it."""
        for line in lines:
            self.line(function, line)

    def line(self, function: str, line: str) -> None:
        rendered = render(function, line.rstrip("\n"))
        if rendered is not None:
            self._print(rendered)

    def plain(self, function: str, line: str) -> None:
        """A line that is not a log entry (a warning printed by a library, gunicorn's errors)."""
        if line.strip():
            self._print(f"{function}: {line.rstrip()}")

    def _print(self, text: str) -> None:
        with self._lock:
            print(text, file=self.out, flush=True)


def render(function: str, text: str) -> str | None:
    """One console line for one log line, or None to leave it out."""
    try:
        entry = json.loads(text)
    except ValueError:
        return f"{function}: {text}" if text.strip() else None
    if not isinstance(entry, dict) or "message" not in entry:
        return f"{function}: {text}"
    severity = entry.get("severity", "DEFAULT")
    clock = _clock(entry.get("time"))
    if severity in _SHOWN_SEVERITY:
        line = f"{clock}  {function}: {severity.lower()}: {entry['message']}"
        exception = str(entry.get("exception") or "").strip().splitlines()
        return f"{line} ({exception[-1].strip()})" if exception else line
    if entry.get("logger") in SHOWN_INFO:
        return f"{clock}  {entry['message']}"
    return None


def _clock(value: object) -> str:
    try:
        return datetime.fromisoformat(str(value)).astimezone().strftime("%H:%M:%S")
    except ValueError:
        return "--:--:--"
