"""A function with a required variable missing or malformed refuses to start, naming it."""

import subprocess
import sys
from pathlib import Path

import pytest

from devstack.postgres import free_port

ROOT = Path(__file__).resolve().parents[2]
BASE = {"NO_GCE_CHECK": "true", "DATABASE_URL": "postgresql+pg8000://u@127.0.0.1:1/x", "TASKS_BACKEND": "local",
        "TIMER_URL": "http://127.0.0.1:1/", "EVENTS_BACKEND": "local", "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}


def start(target: str, **env: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "functions_framework", "--target", target, "--source", str(ROOT / "main.py"),
               "--host", "127.0.0.1", "--port", str(free_port())]
    return subprocess.run(command, env={**BASE, "FUNCTION_TARGET": target, **env}, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("target, env, variable", [
    ("webhook_intake", {}, "ORDER_WEBHOOK_SECRET"),
    ("webhook_intake", {"ORDER_WEBHOOK_SECRET": "whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB"}, "VERIFF_SHARED_SECRET"),
    ("timer_expiry", {"VERIFICATION_WINDOW": "forever"}, "VERIFICATION_WINDOW"),
    ("sweep", {"DATABASE_URL": ""}, "DATABASE_URL"),
    ("request_refund", {"REFUND_BACKEND": "http"}, "REFUND_API_URL"),
])
def test_missing_or_bad_variable_stops_the_start(target, env, variable):
    result = start(target, **env)
    assert result.returncode != 0
    assert f"ConfigError: {variable}" in result.stderr
