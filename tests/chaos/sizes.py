"""Scenario sizes: CI-sized for `scripts/test.sh tests/chaos`, full-sized for `python -m bench.chaos`."""

SIZES = {  # scenario: (CI size, full size)
    "duplicate_storm": ({"orders": 20, "deliveries": 100}, {"orders": 200, "deliveries": 1000}),
    "approval_race": ({"orders": 16}, {"orders": 100}),
    "sigkill": ({"orders": 48}, {"orders": 500}),
    "sigkill_postgres_immediate": ({"orders": 48, "postgres_mode": "immediate"},
                                   {"orders": 500, "postgres_mode": "immediate"}),
    "postgres_fast": ({"orders": 48, "mode": "fast"}, {"orders": 300, "mode": "fast"}),
    "postgres_immediate": ({"orders": 48, "mode": "immediate"}, {"orders": 300, "mode": "immediate"}),
    # issue 24: raw_per_function mangled requests (and item 5's 11 shapes) to each of the 7 functions
    "hostile_input": ({"per_family": 60, "schema_examples": 15, "raw_per_function": 75},
                      {"per_family": 1700, "schema_examples": 100, "raw_per_function": 300}),
    "surrogate_then_valid": ({"valid": 200}, {"valid": 200}),
    "poisoned_sweep": ({"orders": 10}, {"orders": 50}),
    # issue 21: the CI sizes stay under about a minute each on a 2-core machine
    "shopify_sigkill": ({"orders": 24, "window": 60, "second_kill": False}, {"orders": 300, "window": 150}),
    "shopify_throttle": ({"orders": 40, "max_available": 200, "restore_rate": 50, "max_ratio": None},
                         {"orders": 1000}),
    # issue 24: SIGTERM to every function mid-burst, half Shopify orders (CI: about a minute)
    "sigterm": ({"orders": 60}, {"orders": 300, "window": 150}),
}
CI = {name: ci for name, (ci, _) in SIZES.items()}
FULL = {name: full for name, (_, full) in SIZES.items()}
