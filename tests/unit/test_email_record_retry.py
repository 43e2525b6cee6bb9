"""A sent email's record is retried through a database outage: for half the claim's lease,
and never past what send_customer_email's timeout leaves."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from shared.domain.messages import EmailJob
from shared.errors import TransientError
from shared.handlers import emails


class StoppedClock:
    """`time` for the module under test: sleeping moves the clock, nothing waits."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    clock = StoppedClock()
    monkeypatch.setattr(emails, "time", clock)
    return clock


def _database_away(monkeypatch, *, back_after: int | None = None) -> list[float]:
    """Every record attempt fails as an outage would (until `back_after` attempts); the times tried."""
    tried: list[float] = []

    def finish(db, job, now, state, event, **details):
        tried.append(emails.time.monotonic())
        if back_after is None or len(tried) <= back_after:
            raise TransientError("database unavailable", component="database")
        return "recorded"

    monkeypatch.setattr(emails, "_finish_email", finish)
    return tried


JOB = EmailJob(order_id="o-1", kind="link", reminder_index=0)
NOW = datetime(2026, 12, 2, tzinfo=timezone.utc)


@pytest.mark.parametrize("lease, window", [(15.0, 7.5), (300.0, emails.RECORD_RETRY_MAX_SECONDS)])
def test_an_outage_is_retried_for_half_the_lease_at_most_the_cap(monkeypatch, clock, lease, window):
    tried = _database_away(monkeypatch)
    with pytest.raises(TransientError):
        emails._record_sent(None, JOB, NOW, lease=lease)
    elapsed = tried[-1] - tried[0]
    assert window - 2.0 <= elapsed <= window  # pauses grow to 2 s
    assert len(tried) > 3


def test_the_record_is_written_once_the_database_is_back(monkeypatch, clock):
    tried = _database_away(monkeypatch, back_after=3)
    assert emails._record_sent(None, JOB, NOW, lease=300.0) == "recorded"
    assert len(tried) == 4


def test_the_cap_fits_the_functions_timeout():
    from pathlib import Path

    config = (Path(__file__).resolve().parents[2] / "infra" / "config.sh").read_text()
    block = config.split("send-customer-email)", 1)[1].split(";;", 1)[0]
    timeout = int(block.split("timeout=", 1)[1].split("s", 1)[0])
    assert emails.RECORD_RETRY_MAX_SECONDS <= timeout - 20  # the send itself: SMTP or SendGrid, 10 s each call
