"""What an instance does once at start so that its first request does not (issue 13)."""

import json
import subprocess
import sys
from pathlib import Path

from sqlalchemy import event

from shared.db.migrate import LATEST, ensure_schema

ROOT = Path(__file__).resolve().parents[2]
SECRETS = {"ORDER_WEBHOOK_SECRET": "whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB", "VERIFF_SHARED_SECRET": "v",
           "CUSTOMER_KEY_SECRET": "pepper"}
BASE = {"NO_GCE_CHECK": "true", "DATABASE_URL": "postgresql+pg8000://u@127.0.0.1:1/x", "TIMER_URL": "http://127.0.0.1:1/",
        "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "GOOGLE_CLOUD_PROJECT": "p", **SECRETS}
# What functions-framework does at start: load main.py, then ask it for FUNCTION_TARGET.
PROBE = ("import json, os, sys, main; getattr(main, os.environ.get('FUNCTION_TARGET', ''), None); "
         "print(json.dumps({m: m in sys.modules for m in "
         "('pg8000.dbapi', 'grpc', 'google.cloud.tasks_v2', 'google.cloud.pubsub_v1')}))")


def loaded_at_import(**env: str) -> dict[str, bool]:
    result = subprocess.run([sys.executable, "-c", PROBE], env={**BASE, **env}, cwd=ROOT,
                            capture_output=True, text=True, timeout=60, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_served_functions_driver_and_local_adapters_load_at_start_without_google_clients():
    loaded = loaded_at_import(FUNCTION_TARGET="webhook_intake", TASKS_BACKEND="local", EVENTS_BACKEND="local")
    assert loaded == {"pg8000.dbapi": True, "grpc": False, "google.cloud.tasks_v2": False,
                      "google.cloud.pubsub_v1": False}


def test_the_cloud_clients_load_at_start_not_on_the_first_request():
    loaded = loaded_at_import(FUNCTION_TARGET="webhook_intake", TASKS_BACKEND="cloud", EVENTS_BACKEND="pubsub")
    assert loaded["google.cloud.tasks_v2"] and loaded["google.cloud.pubsub_v1"] and loaded["pg8000.dbapi"]


def test_a_process_serving_no_function_loads_no_google_client():
    loaded = loaded_at_import(TASKS_BACKEND="cloud", EVENTS_BACKEND="pubsub")
    assert not (loaded["grpc"] or loaded["google.cloud.tasks_v2"] or loaded["google.cloud.pubsub_v1"])


def test_a_migrated_schema_is_checked_in_one_statement_without_a_transaction(db):
    statements = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        assert ensure_schema(db) == LATEST
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    assert len(statements) == 1 and "advisory" not in statements[0]
