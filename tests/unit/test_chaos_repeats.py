"""The chaos suite's one allowed email repeat (`tests/chaos/scenarios.py` `_repeats`), on a run's
record without a stack: two copies with one Message-ID, a kill between their arrivals, the claim
taken over and sent, one `customer.email_sent` after the kill. Anything else is a problem, and a
run that killed nothing allows no repeat at all."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

import pytest

from tests.chaos.harness import customer_email
from tests.chaos.scenarios import Report, _repeats

ORDER = "chaos-kill-abc-1"


class Run:
    """What `_repeats` reads of a ChaosRun: the kills, the inbox, the claim and its events."""

    def __init__(self, *, arrivals, message_ids=1, killed_at=(), claim=("sent", 2), sent_events=(15.0,)):
        rcpt = customer_email(ORDER)
        self.killed_at = list(killed_at)
        self.claim, self.sent_events = claim, list(sent_events)
        self.world = SimpleNamespace(inbox=SimpleNamespace(
            arrivals=lambda: [((rcpt,), "link", at) for at in arrivals],
            by_recipient_and_kind=lambda distinct=False: Counter(
                {(rcpt.lower(), "link"): message_ids if distinct else len(arrivals)})))

    def query(self, sql, **params):
        assert params["o"] == ORDER and params["k"] == "link"
        if "FROM email_sends" in sql:
            return [list(self.claim)]
        return [[at] for at in self.sent_events]


def figures(run: Run, emails: int = 2) -> tuple[Report, Counter]:
    report = Report("test")
    return report, _repeats(report, run, Counter({(ORDER, "link"): emails}))


def test_a_repeat_after_a_kill_between_the_send_and_its_record_is_counted_apart_and_once():
    report, once = figures(Run(arrivals=[10.0, 20.0], killed_at=[12.0]))
    assert report.problems == []
    assert once == Counter({(ORDER, "link"): 1})
    assert report.figures["emails sent again: killed between the SMTP server's 250 and the record"] == 1
    assert report.figures["emails twice otherwise"] == 0


@pytest.mark.parametrize("run", [
    Run(arrivals=[10.0, 20.0]),                                         # no kill at all
    Run(arrivals=[10.0, 20.0], killed_at=[25.0]),                       # the kill after both arrivals
    Run(arrivals=[10.0, 20.0], killed_at=[12.0], message_ids=2),        # two Message-IDs: two emails
    Run(arrivals=[10.0, 20.0], killed_at=[12.0], claim=("sent", 1)),    # never taken over
    Run(arrivals=[10.0, 20.0], killed_at=[12.0], claim=("sending", 2)),  # not recorded sent
    Run(arrivals=[10.0, 20.0], killed_at=[12.0], sent_events=[11.0]),   # recorded before the kill
    Run(arrivals=[10.0, 20.0], killed_at=[12.0], sent_events=[15.0, 21.0]),  # recorded twice
], ids=["no kill", "kill after", "two ids", "one attempt", "not sent", "recorded before", "recorded twice"])
def test_any_other_repeat_is_a_problem(run):
    report, once = figures(run)
    assert len(report.problems) == 1 and "sent more than once" in report.problems[0]
    assert once == Counter({(ORDER, "link"): 2})
    assert report.figures["emails twice otherwise"] == 1


def test_three_copies_are_a_problem_even_after_a_kill():
    report, _ = figures(Run(arrivals=[10.0, 20.0, 30.0], killed_at=[12.0]), emails=3)
    assert report.figures["emails twice otherwise"] == 1 and len(report.problems) == 1
