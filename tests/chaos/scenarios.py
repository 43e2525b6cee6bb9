"""The chaos scenarios of issue 8, each a function of a `ChaosWorld` and its size.

Each returns a `Report`: the figures (requests by status, sessions, emails by
kind, refund calls, lost/doubled counts, seconds) and the problems found,
one line per broken promise. The pytest tests (CI-sized) assert that there
are none; `bench/chaos.py` runs the same functions at full size and prints
both. A scenario never stops at the first problem: it waits (bounded) for the
stack to settle and counts everything, so a report says how much was lost.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field

from shared.domain.model import Event
from tests.chaos.harness import ChaosRun, ChaosWorld, Clients, Request, Tally, customer_email

TERMINAL_EVENTS = ("verification.approved", "verification.declined", "verification.expired")


@dataclass
class Report:
    scenario: str
    figures: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def check(self, ok: bool, problem: str) -> None:
        if not ok:
            self.problems.append(problem)

    def settle(self, run: ChaosRun, check, what: str, timeout: float) -> bool:
        """Wait (bounded) for `check`; a timeout is a problem of the report, not an exception."""
        try:
            run.wait(check, what, timeout)
            return True
        except AssertionError as exc:
            self.problems.append(str(exc))
            return False


def _statuses(tally: Tally) -> dict:
    return {"answers": dict(tally.count()), "attempts": dict(tally.count(final=False))}


def _once_each(report: Report, counts: Counter, orders, what: str) -> None:
    """Exactly one of `what` per order: the lost and the doubled are counted separately."""
    lost = [o for o in orders if counts.get(o, 0) == 0]
    doubled = [o for o in orders if counts.get(o, 0) > 1]
    report.figures[f"{what} lost"] = len(lost)
    report.figures[f"{what} doubled"] = len(doubled)
    report.check(not lost, f"{len(lost)} of {len(orders)} orders have no {what} (e.g. {lost[:3]})")
    report.check(not doubled, f"{len(doubled)} of {len(orders)} orders have more than one {what} (e.g. {doubled[:3]})")


def _email_figures(report: Report, run: ChaosRun) -> Counter:
    """The emails this run's customers received by kind, and the repeats among them (`_repeats`):
    (order, kind) -> emails, a repeat the design allows after a kill counted once."""
    emails = run.emails()
    report.figures["emails by kind"] = dict(Counter(kind for (_, kind), n in emails.items() for _ in range(n)))
    return _repeats(report, run, emails)


def _repeats(report: Report, run: ChaosRun, emails: Counter) -> Counter:
    """Every email of `emails` ((order, kind) -> received) arrived once, but for the one repeat the
    design allows (README "How it stays correct"): the SMTP server took the email, a kill of the
    stack (`run.killed_at`) came before its send was recorded, and the attempt that took the claim
    over when its lease passed sent it again, with the same Message-ID (`_sent_again_after_a_kill`).
    Those are counted apart; any other repeat is a problem, and a run that killed nothing allows
    none. Returns `emails` with each allowed repeat counted once."""
    twice = sorted(key for key, n in emails.items() if n > 1)
    again = [key for key in twice if _sent_again_after_a_kill(run, *key)]
    report.figures["emails twice"] = len(twice)
    if run.killed_at:
        report.figures["emails sent again: killed between the SMTP server's 250 and the record"] = len(again)
    other = [key for key in twice if key not in again]
    report.figures["emails twice otherwise"] = len(other)
    if other:  # a send repeated after its record was lost keeps its Message-ID (clients may show it once)
        ids = run.world.inbox.by_recipient_and_kind(distinct=True)
        report.figures["emails twice otherwise, one Message-ID"] = sum(
            1 for order, kind in other if ids[(customer_email(order).lower(), kind)] == 1)
    report.check(not other, f"{len(other)} emails were sent more than once, not by a kill between their send and "
                            f"its record (e.g. {other[:3]})")
    return Counter({key: 1 if key in again else n for key, n in emails.items()})


def _sent_again_after_a_kill(run: ChaosRun, order: str, kind: str) -> bool:
    """Whether `order`'s email `kind` arrived twice only because a SIGKILL (`run.killed_at`) fell
    between the SMTP server's acceptance and the record: two copies with one Message-ID, a kill
    between their arrivals, its claim taken over (sent, attempts 2 or more: a second kill may have
    caught the next attempt too, before the server took it), and its one `customer.email_sent`
    event written after that kill (by a later attempt: the first, whose copy arrived, never
    recorded its send)."""
    rcpt = customer_email(order)
    arrivals = sorted(at for rcpts, k, at in run.world.inbox.arrivals() if rcpt in rcpts and k == kind)
    if len(arrivals) != 2 or run.world.inbox.by_recipient_and_kind(distinct=True)[(rcpt.lower(), kind)] != 1:
        return False
    kills = [at for at in run.killed_at if arrivals[0] < at < arrivals[1]]
    if not kills:
        return False
    claims = run.query("SELECT state, attempts FROM email_sends WHERE order_id = :o AND kind = :k", o=order, k=kind)
    recorded = [at for (at,) in run.query(
        "SELECT extract(epoch FROM occurred_at)::float8 FROM event_log WHERE order_id = :o "
        "AND type = :t AND data->>'kind' = :k", o=order, t=str(Event.EMAIL_SENT), k=kind)]
    return (len(claims) == 1 and claims[0][0] == "sent" and claims[0][1] >= 2
            and len(recorded) == 1 and recorded[0] > kills[0])


def _by_kind(emails: Counter, kind: str) -> Counter:
    return Counter({order: n for (order, k), n in emails.items() if k == kind})


def _refund_figures(report: Report, run: ChaosRun, expected: set[str]) -> None:
    calls = run.refund_calls()
    report.figures["refund calls"] = len(calls)
    per_order = Counter(c.order_id for c in calls)
    _once_each(report, per_order, sorted(expected), "refund call")
    unexpected = sorted(set(per_order) - expected)
    report.check(not unexpected, f"refund calls for {len(unexpected)} orders that must not be refunded")
    wrong_key = [c for c in calls if c.idempotency_key != f"refund-{c.order_id}" or not c.authorized]
    report.check(not wrong_key, f"{len(wrong_key)} refund calls without the order's Idempotency-Key or token")


def _place(run: ChaosRun, order_ids: list[str], **send) -> Tally:
    return Clients().run([run.order_request(o) for o in order_ids], **send)


def _place_with_retries(report: Report, run: ChaosRun, order_ids: list[str]) -> None:
    """Set-up of a scenario about something else: the store re-sends what got 503 or no answer
    (bounded); how many attempts that took is a figure, a never-accepted order a problem."""
    tally = _place(run, order_ids, retry_until=time.monotonic() + 240)
    report.figures["placing attempts"] = dict(tally.count(final=False))
    report.check(tally.share_2xx() == 1.0, f"placing the orders: {dict(tally.count())}")


# ---- duplicate storm -----------------------------------------------------------------


def duplicate_storm(world: ChaosWorld, *, orders: int = 200, deliveries: int = 1000) -> Report:
    """N deliveries of M orders, 16 at once: half re-send an earlier webhook id, half are new ids."""
    report = Report("duplicate_storm")
    with world.run("storm") as run:
        ids = [f"{run.prefix}-{i}" for i in range(orders)]
        requests_ = [run.order_request(ids[i % orders], f"msg_{ids[i % orders]}_{(i // orders) % 2}")
                     for i in range(deliveries)]
        random.Random(deliveries).shuffle(requests_)
        tally = Clients().run(requests_)
        report.figures.update(_statuses(tally))
        report.check(tally.share_2xx() == 1.0, f"{tally.share_2xx():.1%} of deliveries answered 2xx, not 100 %")
        report.settle(run, lambda: len(_by_kind(run.emails(), "link")) >= orders and run.undelivered() == 0,
                      "a link email per order and the outbox drained", timeout=60 + deliveries * 0.1)
        _intake_figures(report, run, ids, ids)
        report.figures["pool timeouts in logs"] = run.pool_timeouts()
        report.check(report.figures["pool timeouts in logs"] == 0, "pool timeouts in the stack's logs")
        report.figures["seconds"] = run.seconds()
    return report


# ---- approval racing the deadline ---------------------------------------------------------


def approval_race(world: ChaosWorld, *, orders: int = 100) -> Report:
    """K orders placed 16 at once; each approved within about a second of its own deadline."""
    report = Report("approval_race")
    window = max(20, orders // 3)
    with world.run("race", VERIFICATION_WINDOW=f"{window}s", REMINDER_OFFSETS=f"{window // 2}s") as run:
        ids = [f"{run.prefix}-{i}" for i in range(orders)]
        _place_with_retries(report, run, ids)
        report.settle(run, lambda: run.scalar("SELECT count(*) FROM verification_sessions WHERE order_id LIKE "
                                              ":prefix AND provider_session_id IS NOT NULL") == orders,
                      "a provider session (link) for every order", timeout=window + 60)
        rows = run.query("SELECT order_id, provider_session_id, EXTRACT(EPOCH FROM deadline - now())::float8 "
                         "FROM verification_sessions WHERE order_id LIKE :prefix AND provider_session_id IS NOT NULL")
        jitter = random.Random(orders)
        now = time.monotonic()
        approvals = sorted((Request(**{**vars(run.approval_request(o, vid)),
                                       "at": now + left + jitter.uniform(-1.0, 1.0)}) for o, vid, left in rows),
                           key=lambda r: r.at)
        decided = Clients().run(approvals, retry_until=time.monotonic() + window + 60)  # Veriff re-sends too
        report.figures["approval attempts"] = dict(decided.count(final=False))
        report.check(decided.share_2xx() == 1.0, f"approvals finally answered {dict(decided.count())}")
        report.settle(run, lambda: not any(s in ("pending", "in_review") for s in run.sessions().values())
                      and run.undelivered() == 0 and run.messages_in_flight() == 0
                      and len(run.refund_calls()) >= list(run.sessions().values()).count("expired"),
                      "every session closed, refunded if expired, outbox and message queue drained", timeout=window + 60)
        sessions = run.sessions()
        statuses = Counter(sessions.values())
        report.figures["sessions"] = dict(statuses)
        report.check(set(statuses) <= {"verified", "expired"} and len(sessions) == orders,
                     f"statuses {dict(statuses)} for {orders} orders")
        _once_each(report, run.events(*TERMINAL_EVENTS), ids, "terminal event")
        expired = {o for o, s in sessions.items() if s == "expired"}
        _refund_figures(report, run, expired)
        emails = _email_figures(report, run)
        _once_each(report, _by_kind(emails, "expired"), sorted(expired), "expiry email")
        report.figures["seconds"] = run.seconds()
    return report


# ---- SIGKILL of every process mid-burst -------------------------------------------------


def sigkill_mid_burst(world: ChaosWorld, *, orders: int = 500, postgres_mode: str | None = None) -> Report:
    """Every stack process SIGKILLed (PostgreSQL stopped `postgres_mode` at the same moment) a third
    into a burst, then the same start command; clients re-send what got no answer."""
    report = Report("sigkill" + (f"+postgres_{postgres_mode}" if postgres_mode else ""))
    # The window must outlast a crash's leases (local deliveries 20 s, relay 30 s, email 15 s)
    # plus the restart: a link email not known to be sent by the deadline sends the session to
    # a person (in_review), never to expiry, and this scenario counts expiries.
    window = max(60, orders // 6)
    with world.run("kill", VERIFICATION_WINDOW=f"{window}s", REMINDER_OFFSETS=f"{window // 2}s") as run:
        ids = [f"{run.prefix}-{i}" for i in range(orders)]
        killed = []

        def fault() -> None:
            began = time.monotonic()
            killed.append(run.kill_everything(postgres_mode))
            run.restart()
            report.figures["seconds from kill to up again"] = round(time.monotonic() - began, 1)

        tally = _place(run, ids, retry_until=time.monotonic() + 180, fault=(orders // 3, fault))
        report.figures.update(_statuses(tally))
        report.figures["processes killed"] = killed[0] if killed else 0
        report.check(bool(killed), "the fault never fired")
        accepted = sorted(tally.accepted_keys)
        report.figures["orders answered 2xx"] = len(accepted)
        report.check(len(accepted) == orders, f"only {len(accepted)} of {orders} orders were ever answered 2xx")
        report.settle(run, lambda: sum(1 for s in run.sessions().values() if s == "expired") >= len(accepted)
                      and run.undelivered() == 0 and run.messages_in_flight() == 0
                      and len(run.refund_calls()) >= len(accepted),
                      "every deadline fired, refunds called, outbox and message queue drained", timeout=window + 120)
        _lifecycle_figures(report, run, accepted)
        report.figures["seconds"] = run.seconds()
    return report


def _intake_figures(report: Report, run: ChaosRun, ids: list[str], accepted: list[str]) -> None:
    """A session for each order and nothing else, one set of timers, one link email each, outbox drained."""
    sessions = run.sessions()
    report.figures["sessions"] = len(sessions)
    report.check(sorted(sessions) == sorted(ids), f"{len(sessions)} sessions for {len(ids)} orders")
    report.figures["sessions of orders never answered 2xx"] = len(set(sessions) - set(accepted))
    timers = run.timer_sets()
    wrong = [o for o in accepted if timers.get(o) != 2]  # one reminder and the deadline, each with its task
    report.figures["orders without exactly one set of timers"] = len(wrong)
    report.check(not wrong, f"{len(wrong)} orders without exactly one set of timers (e.g. {wrong[:3]})")
    # The run's own database: these orders only. Timers only (the local queue carries messages too).
    tasks = run.scalar("SELECT count(*) FROM local_tasks WHERE queue = 'timers'")
    report.figures["local tasks"] = tasks
    report.check(tasks == 2 * len(sessions), f"{tasks} local tasks for {len(sessions)} sessions, not 2 each")
    _once_each(report, _by_kind(_email_figures(report, run), "link"), accepted, "link email")
    _undelivered_figure(report, run)


def _undelivered_figure(report: Report, run: ChaosRun) -> None:
    report.figures["undelivered outbox rows"] = run.undelivered()
    report.check(report.figures["undelivered outbox rows"] == 0, "outbox rows left undelivered")
    report.check(run.stack_alive(), "the stack exited on its own (a function died, devstack.run stopped them all)")


def _lifecycle_figures(report: Report, run: ChaosRun, accepted: list[str]) -> None:
    """Every accepted order: its session and timers, one link, expired once, one refund, one expiry email."""
    sessions = run.sessions()
    report.figures["sessions"] = dict(Counter(sessions.values()))
    missing = [o for o in accepted if o not in sessions]
    report.check(not missing, f"{len(missing)} orders answered 2xx have no session")
    timers = run.timer_sets()
    no_timers = [o for o in accepted if timers.get(o) != 2]
    report.figures["orders without their timers"] = len(no_timers)
    report.check(not no_timers, f"{len(no_timers)} orders without their reminder and deadline timers")
    not_expired = [o for o in accepted if sessions.get(o) != "expired"]
    report.figures["sessions not expired"] = len(not_expired)
    report.check(not not_expired, f"{len(not_expired)} sessions did not expire (e.g. "
                                  f"{[(o, sessions.get(o)) for o in not_expired[:3]]})")
    _once_each(report, run.events("verification.expired"), accepted, "expiry event")
    emails = _email_figures(report, run)
    _once_each(report, _by_kind(emails, "link"), accepted, "link email")
    _once_each(report, _by_kind(emails, "expired"), accepted, "expiry email")
    # Refunds: once for every expired session, answered 2xx or not (a 503 for a write that committed
    # still expires at its deadline), and for nothing else.
    _refund_figures(report, run, {o for o, s in sessions.items() if s == "expired"})
    _undelivered_figure(report, run)


# ---- PostgreSQL stopped mid-burst ----------------------------------------------------------


def postgres_outage(world: ChaosWorld, *, orders: int = 300, mode: str = "fast") -> Report:
    """PostgreSQL stopped with `pg_ctl stop -m MODE` a third into a burst, `/health` asked while it is
    down, started again; clients re-send what got 503 or no answer."""
    report = Report(f"postgres_{mode}")
    with world.run("pg") as run:
        ids = [f"{run.prefix}-{i}" for i in range(orders)]
        health = []

        def fault() -> None:
            world.postgres.stop(mode)
            try:
                run.wait(lambda: health.append(run.health()) or health[-1][0] == 503, "/health to answer 503", 30)
            except AssertionError:
                pass
            world.postgres.start()

        tally = _place(run, ids, retry_until=time.monotonic() + 120, fault=(orders // 3, fault))
        report.figures.update(_statuses(tally))
        report.figures["5xx other than 503"] = tally.five_hundreds()
        report.check(tally.five_hundreds() == 0, f"{tally.five_hundreds()} answers were 5xx other than 503")
        last = health[-1] if health else ("never asked", {})
        report.figures["/health while down"] = [last[0], last[1].get("failing")]
        report.check(last[0] == 503 and "database" in (last[1].get("failing") or []),
                     f"/health while PostgreSQL was down answered {last[0]} {last[1]}")
        accepted = sorted(tally.accepted_keys)
        report.figures["orders answered 2xx"] = len(accepted)
        report.check(len(accepted) == orders, f"{orders - len(accepted)} orders never accepted after the restart")
        report.settle(run, lambda: len(_by_kind(run.emails(), "link")) >= len(accepted) and run.undelivered() == 0,
                      "a link email per order and the outbox drained", timeout=90)
        _intake_figures(report, run, ids, accepted)
        report.figures["/health at the end"] = run.health()[0]
        report.figures["seconds"] = run.seconds()
    return report


# ---- a lone surrogate, then valid requests; a poisoned row, then the sweep ---------------------


def surrogate_then_valid(world: ChaosWorld, *, valid: int = 200) -> Report:
    """Five timer deliveries with `"\\ud800"` (the JSON escape), then `valid` valid timer deliveries."""
    report = Report("surrogate_then_valid")
    with world.run("surrogate") as run:
        ids = [f"{run.prefix}-{i}" for i in range(10)]
        _place_with_retries(report, run, ids)
        timer_url = run.port(1)
        poison = [Request(timer_url, json.dumps({"v": 1, "order_id": ids[i], "kind": "reminder",
                                                 "reminder_index": 0, "deadline_version": 1})
                          .replace(ids[i], ids[i] + "\\ud800").encode(), {"Content-Type": "application/json"})
                  for i in range(5)]
        poisoned = Clients(count=1).run(poison)
        report.figures["surrogate deliveries"] = dict(poisoned.count())
        report.check(poisoned.server_errors() == 0, f"surrogate deliveries answered {dict(poisoned.count())}")
        good = [Request(timer_url, json.dumps({"v": 1, "order_id": ids[i % len(ids)], "kind": "reminder",
                                               "reminder_index": 0, "deadline_version": 1}).encode(),
                        {"Content-Type": "application/json"}) for i in range(valid)]
        tally = Clients().run(good)
        report.figures["valid deliveries"] = dict(tally.count())
        failures = len(good) - sum(1 for s in tally.final.values() if s == 200)
        report.figures["failures"] = failures
        report.check(failures == 0, f"{failures} of {valid} valid timer deliveries after the surrogate failed")
        report.figures["seconds"] = run.seconds()
    return report


def poisoned_sweep(world: ChaosWorld, *, orders: int = 20) -> Report:
    """A poisoned outbox row and a session with an absurd deadline beside orders whose deadline
    timers were lost: the sweep must still relay and expire every one of those."""
    report = Report("poisoned_sweep")
    with world.run("poison", VERIFICATION_WINDOW="10s", REMINDER_OFFSETS="9s") as run:
        ids = [f"{run.prefix}-{i}" for i in range(orders)]
        _place_with_retries(report, run, ids)
        report.settle(run, lambda: len(_by_kind(run.emails(), "link")) >= orders and run.undelivered() == 0,
                      "the link emails", timeout=60)
        absurd = run.order_request(f"{run.prefix}-absurd", createdAt="0001-01-01T00:00:00+14:00")
        report.figures["absurd createdAt answered"] = dict(Clients(count=1).run([absurd]).count())
        poison = f"{run.prefix}-poison"
        run.query("INSERT INTO verification_sessions (order_id, source, customer_email, status, ordered_at, deadline) "
                  "VALUES (:o, 'orders', 'x', 'pending', '0002-01-01 00:00:00+00 BC', '0001-01-01 00:00:00+00 BC')",
                  o=poison)
        run.query("INSERT INTO outbox (kind, order_id, payload) VALUES ('task.create', :o, '{}'::jsonb)", o=poison)
        lost = run.query("UPDATE local_tasks q SET deleted_at = now() FROM countdown_timers t "
                         "WHERE q.name LIKE '%' || t.task_name AND t.kind = 'deadline' AND t.order_id LIKE :prefix "
                         "AND q.done_at IS NULL RETURNING t.order_id")
        report.figures["deadline timers lost on purpose"] = len(lost)
        report.settle(run, lambda: sum(1 for o, s in run.sessions().items() if s == "expired" and o in ids) >= orders
                      and run.undelivered(besides=poison) == 0 and run.messages_in_flight() == 0
                      and len(run.refund_calls()) >= orders,
                      "the sweep to expire and relay every other order, its messages delivered", timeout=90)
        _lifecycle_figures(report, run, ids)
        report.figures["seconds"] = run.seconds()
    return report
