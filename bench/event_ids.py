"""What time-ordered event ids (UUID version 7, shared/domain/ids.py) buy the database against
random ones (version 4, as they were), in one run.

    .venv/bin/python -m bench.event_ids [--rows 400000] [--batch 1000] [--checkpoint-every 50]

Two tables shaped like `event_log`'s key (a bigserial, a UUID with a unique index, a little
data), filled in alternating batches, one with each kind of id made by its generator in Python.
A CHECKPOINT every few batches stands in for the checkpoints of a long-running database: the
first change to a page after one writes the whole page to the WAL. Printed: the unique index's
size, the WAL written, and the insert time, per kind and as the ratio random / time-ordered; and
each generator's own cost per id.
"""

from __future__ import annotations

import argparse
import os
import time

from sqlalchemy import text

from bench._common import database
from shared.domain.ids import new_id


def random_v4_id() -> str:
    """The ids as they were: a random version 4 UUID, one `os.urandom(16)` call each."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


KINDS = {"random (v4)": random_v4_id, "time-ordered (v7)": new_id}


def generator_cost(make, n: int = 200_000) -> float:
    started = time.perf_counter()
    for _ in range(n):
        make()
    return (time.perf_counter() - started) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--checkpoint-every", type=int, default=50, help="batches between checkpoints")
    args = parser.parse_args()
    tables = {kind: f"ids_{i}" for i, kind in enumerate(KINDS)}
    seconds = dict.fromkeys(KINDS, 0.0)
    wal = dict.fromkeys(KINDS, 0)
    with database() as (db, _):
        for table in tables.values():
            db.atomic(text(f"CREATE TABLE {table} (id bigserial PRIMARY KEY, event_id uuid NOT NULL UNIQUE, "
                           "data jsonb NOT NULL DEFAULT '{}')"))
        insert = {kind: text(f"INSERT INTO {table} (event_id) SELECT unnest(CAST(:ids AS uuid[]))")
                  for kind, table in tables.items()}
        lsn = text("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn")
        for batch in range(args.rows // args.batch):
            if batch % args.checkpoint_every == 0:
                db.atomic(text("CHECKPOINT"))
            order = list(KINDS.items()) if batch % 2 == 0 else list(reversed(KINDS.items()))
            for kind, make in order:
                ids = [make() for _ in range(args.batch)]
                before = int(db.atomic(lsn)[0][0])
                started = time.perf_counter()
                db.atomic(insert[kind], {"ids": ids})
                seconds[kind] += time.perf_counter() - started
                wal[kind] += int(db.atomic(lsn)[0][0]) - before
        size = {kind: db.atomic(text(f"SELECT pg_relation_size('{table}_event_id_key')"))[0][0]
                for kind, table in tables.items()}
    rows = args.rows // args.batch * args.batch
    print(f"event ids: {rows} rows per kind in batches of {args.batch}, alternating, a CHECKPOINT every "
          f"{args.checkpoint_every} batches; one PostgreSQL on 127.0.0.1")
    print(f"{'kind':<20}{'index MB':>10}{'WAL bytes/row':>15}{'insert us/row':>15}{'generate us/id':>16}")
    for kind, make in KINDS.items():
        print(f"{kind:<20}{size[kind] / 2**20:>10.1f}{wal[kind] / rows:>15.0f}{seconds[kind] / rows * 1e6:>15.2f}"
              f"{generator_cost(make):>16.2f}")
    v4, v7 = KINDS
    print(f"random / time-ordered: index size {size[v4] / size[v7]:.2f}x, WAL {wal[v4] / wal[v7]:.2f}x, "
          f"insert time {seconds[v4] / seconds[v7]:.2f}x")


if __name__ == "__main__":
    main()
