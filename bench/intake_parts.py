"""What four changes to the intake buy, measured against itself in one run: the
in-process intake (bench.intake's `ours`: signature, parse, one prepared `place_order`) with
each undone on its own, and all undone, in alternating rounds.

    .venv/bin/python -m bench.intake_parts [--n 2000] [--concurrency 8] [--rounds 6]

The four changes (shared/db/engine.py, shared/db/sessions.py, shared/domain/ids.py,
shared/db/database.py):
- blocking sockets (for production parity: the Cloud SQL connector's block): undone, every
  pooled socket gets back the 5 s Python timeout pg8000 leaves on it (Python then polls before
  every send and receive);
- orjson writes `place_order`'s argument: undone, json does;
- time-ordered event ids (UUID version 7): undone, every event id is a random version 4 UUID,
  as before (its insert into `event_log`'s unique index lands on a random leaf; at this bench's
  table sizes the index stays cached: bench.event_ids measures it on its own);
- Bind, Execute and Sync in one write: undone, the prepared statement runs through pg8000's
  `execute_named`, which sends a Flush after Bind and after Execute (the server answers in
  three packets).

Printed: webhooks/s and the process's CPU per webhook (median of the rounds), and each
variant's throughput as a ratio of the shipped one's.
"""

from __future__ import annotations

import statistics
import time

import shared.db.database
from bench._common import database, round_options
from bench.event_ids import random_v4_id
from bench.intake import SECRET, drive, make_webhooks, ours
from shared.db import sessions
from shared.domain import effects, ids
from shared.handlers import intake

SHIPPED_ARGUMENT = sessions.argument
JSON_ARGUMENT = sessions.json_argument  # json writes the document orjson writes (rows as their fields)


VARIANTS = {  # name: (socket timeout, json argument, version 4 ids, pg8000's Flush messages)
    "shipped": (None, False, False, False),
    "socket timeout 5 s": (5.0, False, False, False),
    "json argument": (None, True, False, False),
    "version 4 ids": (None, False, True, False),
    "flush messages": (None, False, False, True),
    "all undone": (5.0, True, True, True),
}
SHIPPED_BIND = shared.db.database._bind_execute_sync


def pg8000_execute_named(driver, name, params, columns, input_funcs, sql):
    return driver.execute_named(name, params, columns, input_funcs, sql)


def configure(db, pool_size: int, timeout: float | None, use_json: bool, v4_ids: bool,
              flushes: bool) -> None:
    held = [db.engine.raw_connection() for _ in range(pool_size)]  # every pooled connection at once
    for pooled in held:
        pooled.dbapi_connection._usock.settimeout(timeout)
    for pooled in held:
        pooled.close()
    sessions.argument = JSON_ARGUMENT if use_json else SHIPPED_ARGUMENT
    effects.new_id = intake.new_id = random_v4_id if v4_ids else ids.new_id
    shared.db.database._bind_execute_sync = pg8000_execute_named if flushes else SHIPPED_BIND


def main() -> None:
    args = round_options(n=2000, rounds=6)
    pool_size = 10
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in VARIANTS}
    with database(ORDER_WEBHOOK_SECRET=SECRET, DB_POOL_SIZE=str(pool_size)) as (db, settings):
        handle = ours(db, settings)
        drive(db, handle, make_webhooks(300), args.concurrency)  # warm the pool and the plan cache
        for _ in range(args.rounds):  # alternate, so machine noise falls on every variant alike
            for name, variant in VARIANTS.items():
                configure(db, pool_size, *variant)
                hooks = make_webhooks(args.n)
                cpu = time.process_time()
                results, elapsed, _, _ = drive(db, handle, hooks, args.concurrency)
                cpu = time.process_time() - cpu
                assert results.count("accepted") == args.n, "every distinct webhook must be accepted"
                runs[name].append((args.n / elapsed, cpu / args.n * 1e6))
        configure(db, pool_size, *VARIANTS["shipped"])

    shipped = [rate for rate, _ in runs["shipped"]]
    print(f"intake parts: N={args.n} new webhooks per round, concurrency={args.concurrency}, "
          f"{args.rounds} alternating rounds (medians), in-process, one PostgreSQL on 127.0.0.1")
    print(f"{'variant':<20}{'webhooks/s':>11}{'CPU us/webhook':>16}{'shipped / variant':>19}  (rounds)")
    for name, values in runs.items():
        ratios = [s / rate for s, (rate, _) in zip(shipped, values)]
        print(f"{name:<20}{statistics.median(r for r, _ in values):>11.0f}"
              f"{statistics.median(c for _, c in values):>16.0f}{statistics.median(ratios):>18.2f}x"
              f"  ({', '.join(f'{r:.2f}' for r in ratios)})")


if __name__ == "__main__":
    main()
