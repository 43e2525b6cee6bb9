"""Runs inside the DBOS venv (bench/dbos.py): N order workflows at concurrency C.

Each order is a DBOS workflow, as a team would write this service on DBOS Transact: a
step that opens the session row, then a durable sleep until the deadline. Prints the
orders/s until every session row exists (the point where our intake answers).
    python dbos_workflows.py URL N C
"""

import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa
from dbos import DBOS

url, n, concurrency = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1), pool_size=concurrency)
with engine.begin() as conn:
    conn.execute(sa.text("CREATE TABLE IF NOT EXISTS dbos_sessions (order_id text PRIMARY KEY, email text, "
                         "deadline timestamptz NOT NULL)"))

DBOS(config={"name": "verification-bench", "system_database_url": url, "log_level": "WARNING",
             "console_log_level": "WARNING"})


@DBOS.step()
def open_session(order_id: str, email: str) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO dbos_sessions VALUES (:o, :e, now() + interval '72 hours') "
                             "ON CONFLICT DO NOTHING"), {"o": order_id, "e": email})


@DBOS.workflow()
def verification(order_id: str, email: str) -> None:
    open_session(order_id, email)
    DBOS.sleep(72 * 3600)  # the deadline, as a durable timer


DBOS.launch()
tag = uuid.uuid4().hex[:8]
orders = [f"dbos-{tag}-{i}" for i in range(n)]
started = time.perf_counter()
with ThreadPoolExecutor(concurrency) as pool:
    list(pool.map(lambda o: DBOS.start_workflow(verification, o, "buyer@example.com"), orders))
with engine.connect() as conn:
    while conn.execute(sa.text("SELECT count(*) FROM dbos_sessions WHERE order_id LIKE :t"),
                       {"t": f"dbos-{tag}-%"}).scalar_one() < n:
        time.sleep(0.01)
        conn.commit()
print(f"RATE {n / (time.perf_counter() - started):.1f}", flush=True)
os._exit(0)  # N workflows are sleeping in their own threads until the deadline: leave them
