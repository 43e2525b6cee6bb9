"""One `ChaosWorld` (PostgreSQL of its own, SMTP inbox, refund API) for the chaos module."""

from __future__ import annotations

import pytest

from tests.chaos.harness import ChaosWorld


@pytest.fixture(scope="module")
def world():
    with ChaosWorld() as chaos:
        yield chaos
