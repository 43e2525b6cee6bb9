"""Issue 8's fault-injection suite, CI-sized: the real local stack at its stock pool settings.

Each test runs one scenario of tests/chaos/scenarios.py (bench/chaos.py runs the
same at full size) and asserts that its report lists no problem; the report's
figures are in the failure message.
"""

from __future__ import annotations

import json

import pytest

from tests.chaos.registry import SCENARIOS
from tests.chaos.sizes import CI

pytestmark = pytest.mark.timeout(600)


@pytest.mark.parametrize("name", list(CI))
def test_scenario(world, name):
    report = SCENARIOS[name](world, **CI[name])
    print(f"\n{name} {CI[name]}: " + json.dumps(report.figures, default=str))  # `-s` shows the figures
    assert report.problems == [], f"{name}: {report.problems}\nfigures: {report.figures}"
