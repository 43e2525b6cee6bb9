"""Where the in-process intake's gap to pgbench lies, measured in one run: the intake as
bench.intake drives it, the same statements with every webhook's `place_order` argument built
before the clock starts (only `Database.run_prepared` timed: no signature check, parse,
effects or encode), and the intake with a fixed amount of extra Python per webhook (a loop
timed alone at about 10 µs), in alternating rounds. Then, on one thread, this process's CPU a
webhook (user and system) for the handler's Python with a capturing database (no round trip), a
one-value prepared statement's round trip alone, the two one after the other, and the intake.

    .venv/bin/python -m bench.intake_gap [--n 2000] [--concurrency 8] [--rounds 6]

Printed: webhooks/s per variant (median) and each variant's throughput as a ratio of the
intake's, per round. The first ratio says how much of the gap the handler's own Python is; the
second, what each µs of it costs under load (two cores shared with PostgreSQL, one GIL). The
CPU figures say what the handler's Python costs between round trips, against its cost run
back to back: the first is what the intake pays.
"""

from __future__ import annotations

import statistics
import timeit

from bench._common import database, round_options
from bench.intake import SECRET, Capture, drive, make_webhooks, ours, process_cpu
from shared.db import sessions


def prebuilt_arguments(settings, hooks) -> list[str]:
    """The argument the intake (bench.intake's `ours`) sends for each hook, captured unsent."""
    capture = Capture()
    handle = ours(capture, settings)
    arguments = []
    for hook in hooks:
        handle(hook)
        arguments.append(capture.argument)
    return arguments


def busy(iterations: int) -> int:
    total = 0
    for i in range(iterations):
        total += i
    return total


def iterations_for(microseconds: float) -> int:
    """How many `busy` iterations take about `microseconds` on this machine, alone."""
    iterations = 10
    while timeit.timeit(lambda: busy(iterations), number=2000) / 2000 * 1e6 < microseconds:
        iterations += 10
    return iterations


def client_cpu(db, settings, n: int) -> dict[str, float]:
    """This process's CPU a webhook in µs, on this thread alone (one call at a time): the
    handler with a capturing database, a one-value prepared statement alone, the two one after
    the other for each webhook, and the intake (the handler on the database)."""
    handler, intake = ours(Capture(), settings), ours(db, settings)

    def round_trip(_hook) -> None:
        db.run_prepared("SELECT $1::int", 1)

    def both(hook) -> None:
        handler(hook)
        round_trip(hook)

    cpu = {}
    for name, work in (("handler, database captured", handler), ("round trip alone", round_trip),
                       ("the two, one after the other", both), ("intake", intake)):
        hooks = make_webhooks(n)
        started = process_cpu()
        results = [work(hook) for hook in hooks]
        cpu[name] = (process_cpu() - started) / n * 1e6
        if work is intake:
            assert results.count("accepted") == n, "every distinct webhook must be accepted"
    return cpu


def main() -> None:
    args = round_options(n=2000, rounds=6)
    extra = iterations_for(10)
    runs: dict[str, list[float]] = {"intake": [], "argument built beforehand": [], "intake + 10 µs Python": []}
    with database(ORDER_WEBHOOK_SECRET=SECRET) as (db, settings):
        handle = ours(db, settings)

        def prepared_only(argument: str) -> str:  # the fast path's statement, as `sessions.place_order` runs it
            _, new_session = db.run_prepared(sessions._PLACE_ORDER, argument)[0]
            return "accepted" if new_session else "duplicate"

        def with_extra(hook) -> str:
            busy(extra)
            return handle(hook)

        drive(db, handle, make_webhooks(300), args.concurrency)  # warm the pool and the plan cache
        for _ in range(args.rounds):  # alternate, so machine noise falls on every variant alike
            for name in runs:
                hooks = make_webhooks(args.n)
                if name == "argument built beforehand":
                    work, items = prepared_only, prebuilt_arguments(settings, hooks)
                else:
                    work, items = (handle if name == "intake" else with_extra), hooks
                results, elapsed, _, _ = drive(db, work, items, args.concurrency)
                assert results.count("accepted") == args.n, "every distinct webhook must be accepted"
                runs[name].append(args.n / elapsed)
        cpus = [client_cpu(db, settings, args.n) for _ in range(args.rounds)]

    print(f"intake gap: N={args.n} new webhooks per round, concurrency={args.concurrency}, "
          f"{args.rounds} alternating rounds (medians), in-process, one PostgreSQL on 127.0.0.1")
    print(f"{'variant':<28}{'webhooks/s':>11}{'variant / intake':>18}  (rounds)")
    for name, rates in runs.items():
        ratios = [rate / base for rate, base in zip(rates, runs["intake"])]
        print(f"{name:<28}{statistics.median(rates):>11.0f}{statistics.median(ratios):>17.2f}x"
              f"  ({', '.join(f'{r:.2f}' for r in ratios)})")
    print("this process's CPU a webhook (user and system), one thread, one call at a time (medians):")
    for name in cpus[0]:
        print(f"  {name:<30}{statistics.median(c[name] for c in cpus):>6.0f} µs")
    apart = [c["handler, database captured"] + c["round trip alone"] for c in cpus]
    together = [c["the two, one after the other"] / a for c, a in zip(cpus, apart)]
    print(f"  the two one after the other / the sum of each alone: median {statistics.median(together):.2f}x "
          f"(rounds: {', '.join(f'{r:.2f}' for r in together)})")


if __name__ == "__main__":
    main()
