"""bench.intake_gap's CPU figures: each variant runs what its name says, on a real database."""

from sqlalchemy import text

from bench._common import database
from bench.intake import SECRET
from bench.intake_gap import client_cpu


def test_only_the_intake_variant_writes_and_every_variant_is_measured():
    with database(ORDER_WEBHOOK_SECRET=SECRET) as (db, settings):
        cpu = client_cpu(db, settings, 40)
        sessions = db.atomic(text("SELECT count(*) FROM verification_sessions"))[0][0]

    assert list(cpu) == ["handler, database captured", "round trip alone", "the two, one after the other", "intake"]
    assert all(value > 0 for value in cpu.values())
    # The intake opened a session for each of its webhooks; the captured handler (alone, or
    # alternating with the round trip) wrote nothing.
    assert sessions == 40
