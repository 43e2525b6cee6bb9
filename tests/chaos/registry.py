"""Scenario name -> function, shared by the tests and bench/chaos.py."""

from tests.chaos.hostile import hostile_input
from tests.chaos.scenarios import (
    approval_race,
    duplicate_storm,
    poisoned_sweep,
    postgres_outage,
    sigkill_mid_burst,
    surrogate_then_valid,
)
from tests.chaos.store_scenarios import shopify_sigkill, shopify_throttle, sigterm_mid_burst

SCENARIOS = {
    "duplicate_storm": duplicate_storm,
    "approval_race": approval_race,
    "sigkill": sigkill_mid_burst,
    "sigkill_postgres_immediate": sigkill_mid_burst,
    "postgres_fast": postgres_outage,
    "postgres_immediate": postgres_outage,
    "hostile_input": hostile_input,
    "surrogate_then_valid": surrogate_then_valid,
    "poisoned_sweep": poisoned_sweep,
    "shopify_sigkill": shopify_sigkill,
    "shopify_throttle": shopify_throttle,
    "sigterm": sigterm_mid_burst,
}
