"""Scenario sizes: CI-sized for `scripts/test.sh tests/chaos`, full-sized for `python -m bench.chaos`."""

CI = {
    "duplicate_storm": {"orders": 20, "deliveries": 100},
    "approval_race": {"orders": 16},
    "sigkill": {"orders": 48},
    "sigkill_postgres_immediate": {"orders": 48, "postgres_mode": "immediate"},
    "postgres_fast": {"orders": 48, "mode": "fast"},
    "postgres_immediate": {"orders": 48, "mode": "immediate"},
    "hostile_input": {"per_family": 60, "schema_examples": 15},
    "surrogate_then_valid": {"valid": 200},
    "poisoned_sweep": {"orders": 10},
}

FULL = {
    "duplicate_storm": {"orders": 200, "deliveries": 1000},
    "approval_race": {"orders": 100},
    "sigkill": {"orders": 500},
    "sigkill_postgres_immediate": {"orders": 500, "postgres_mode": "immediate"},
    "postgres_fast": {"orders": 300, "mode": "fast"},
    "postgres_immediate": {"orders": 300, "mode": "immediate"},
    "hostile_input": {"per_family": 1700, "schema_examples": 100},
    "surrogate_then_valid": {"valid": 200},
    "poisoned_sweep": {"orders": 50},
}
