"""`main.py` serves every entry point but imports only the one asked for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.functions_table import FUNCTIONS

ROOT = Path(__file__).resolve().parents[2]
_PROBE = """
import json, sys
import main
function = getattr(main, sys.argv[1])
print(json.dumps({"callable": callable(function),
                  "functions": sorted(m for m in sys.modules if m.startswith("functions.")),
                  "heavy": sorted(m for m in ("shared.console", "cryptography", "requests") if m in sys.modules)}))
"""


def probe(entry_point: str) -> dict:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NO_GCE_CHECK": "true", "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", _PROBE, entry_point], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("entry_point", [f.entry_point for f in FUNCTIONS])
def test_asking_for_one_entry_point_imports_that_function_alone(entry_point):
    found = probe(entry_point)
    assert found["callable"]
    own = {f"functions.{entry_point}"}
    assert own <= set(found["functions"]) <= own | {"functions._http", "functions._cloudevent"}


def test_the_intake_cold_start_imports_neither_the_console_nor_the_http_clients():
    assert probe("webhook_intake")["heavy"] == []


def test_an_unknown_name_is_an_attribute_error_and_dir_lists_the_entry_points():
    import main

    with pytest.raises(AttributeError):
        main.not_a_function  # noqa: B018
    assert dir(main) == sorted(f.entry_point for f in FUNCTIONS)
