"""Cloud Functions entry points; each is deployed as its own function (deploy.sh), all from
this file, as listed in `shared/functions_table.py`.

functions-framework loads this file and then asks it for its target: only that function's
module is imported then (PEP 562), so a cold start does not pay for the other functions'
imports (the console's templates and JWT checks, the subscribers' HTTP clients)."""

from __future__ import annotations

import importlib

from shared.functions_table import FUNCTIONS

_ENTRY_POINTS = frozenset(f.entry_point for f in FUNCTIONS)


def __getattr__(name: str):
    if name in _ENTRY_POINTS:
        # Every function's app answers a body its server cannot parse with 400, not 500, and
        # logs through our one JSON handler (functions-framework may have installed its own).
        importlib.import_module("functions._http").guard_current_app()
        importlib.import_module("shared.log").configure()
        return getattr(importlib.import_module(f"functions.{name}"), name)
    raise AttributeError(f"module 'main' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(_ENTRY_POINTS)
