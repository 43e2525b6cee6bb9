"""The subset of the Cloud Logging query language that infra/monitoring/metrics/ uses, applied to
the JSON lines the functions write, as Cloud Logging would ingest them from a Cloud Run
service's stdout.

Supported: terms joined by AND; `resource.type="..."`, `labels.KEY="..."` (the line's
`logging.googleapis.com/labels`, which becomes the entry's `labels`), `jsonPayload.KEY="..."`
(any other field of the line), `severity>=LEVEL` / `severity="LEVEL"`. Anything else raises,
so a filter that grows past this subset fails its test instead of being half-checked.
"""

from __future__ import annotations

import re

SEVERITIES = ["DEFAULT", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL", "ALERT", "EMERGENCY"]
SPECIAL = {"severity", "message", "time", "logging.googleapis.com/labels", "logging.googleapis.com/trace",
           "logging.googleapis.com/spanId", "logging.googleapis.com/trace_sampled"}
_TERM = re.compile(r'^(?P<field>[A-Za-z_][A-Za-z0-9_.]*)\s*(?P<op>>=|=)\s*(?P<value>"[^"]*"|[A-Z]+)$')
# Cloud Functions gen2 run on Cloud Run: their entries' monitored resource.
RESOURCE_TYPE = "cloud_run_revision"


def terms(query: str) -> list[tuple[str, str, str]]:
    out = []
    for raw in re.split(r"\s+AND\s+", query.strip()):
        match = _TERM.match(raw.strip())
        if not match:
            raise ValueError(f"outside the supported filter subset: {raw!r}")
        value = match["value"]
        out.append((match["field"], match["op"], value[1:-1] if value.startswith('"') else value))
    return out


def field(entry: dict, name: str, resource_type: str = RESOURCE_TYPE) -> object:
    """A LogEntry field of a JSON line (None when absent)."""
    if name == "resource.type":
        return resource_type
    if name == "severity":
        return entry.get("severity", "DEFAULT")
    if name.startswith("labels."):
        return (entry.get("logging.googleapis.com/labels") or {}).get(name.removeprefix("labels."))
    if name.startswith("jsonPayload."):
        node: object = {k: v for k, v in entry.items() if k not in SPECIAL}
        for part in name.removeprefix("jsonPayload.").split("."):
            node = node.get(part) if isinstance(node, dict) else None
        return node
    raise ValueError(f"unsupported field {name!r}")


def matches(query: str, entry: dict, resource_type: str = RESOURCE_TYPE) -> bool:
    for name, op, value in terms(query):
        actual = field(entry, name, resource_type)
        if op == ">=":
            if name != "severity":
                raise ValueError(f">= only on severity here: {name}")
            if SEVERITIES.index(str(actual)) < SEVERITIES.index(value):
                return False
        elif actual is None or str(actual) != value:
            return False
    return True


_EXTRACT = re.compile(r"^EXTRACT\((?P<field>[A-Za-z_][A-Za-z0-9_.]*)\)$")


def extract(extractor: str, entry: dict) -> object:
    match = _EXTRACT.match(extractor)
    if not match:
        raise ValueError(f"unsupported extractor {extractor!r}")
    return field(entry, match["field"])
