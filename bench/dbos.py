"""Optional: the intake against DBOS Transact, the durable-workflow library a Python team
would pick for this service, on the same PostgreSQL.

    .venv/bin/python -m bench.dbos [--n 500] [--concurrency 8] [--rounds 2]

DBOS gets its own virtual environment in the temp directory (built on first use with
`pip install dbos`, then reused); when it cannot be installed the bench says so and
stops without failing. Each round runs N orders through our intake handler in-process
(`bench.intake`'s), then N DBOS workflows (bench/peers/dbos_workflows.py: a step that
opens the session row, then a durable sleep until the deadline) in a fresh process, at
the same concurrency; the ratio is ours / DBOS per round.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url

from bench._common import SECRET, database, round_options
from bench.intake import make_webhooks, ours

VENV = Path(tempfile.gettempdir()) / "verification-bench-dbos-venv"
PEER = Path(__file__).resolve().parent / "peers" / "dbos_workflows.py"


def dbos_python() -> Path | None:
    python = VENV / "bin" / "python"
    if python.exists() and subprocess.run([str(python), "-c", "import dbos"], capture_output=True).returncode == 0:
        return python
    try:
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, capture_output=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "dbos"],
                       check=True, capture_output=True, timeout=600)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        print(f"DBOS comparison skipped: DBOS Transact could not be installed ({type(exc).__name__}); "
              f"try `{python} -m pip install dbos`")
        return None
    return python


def run_dbos(python: Path, url: str, n: int, concurrency: int) -> float:
    result = subprocess.run([str(python), str(PEER), url, str(n), str(concurrency)],
                            capture_output=True, text=True, timeout=600)
    rates = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("RATE ")]
    if not rates:
        raise RuntimeError(f"DBOS run failed (exit {result.returncode})")
    return float(rates[0])


def run_ours(db, settings, n: int, concurrency: int) -> float:
    handle = ours(db, settings)
    hooks = make_webhooks(n)
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        assert list(pool.map(handle, hooks)).count("accepted") == n
    return n / (time.perf_counter() - started)


def main() -> None:
    args = round_options(n=500, rounds=2)
    python = dbos_python()
    if python is None:
        return
    with database(ORDER_WEBHOOK_SECRET=SECRET) as (db, settings):
        with db.read() as conn:
            conn.execute(text("CREATE DATABASE dbos_bench"))
        url = make_url(settings.database.url).set(drivername="postgresql", database="dbos_bench")
        url = url.render_as_string(hide_password=False)
        run_ours(db, settings, 100, args.concurrency)  # warm
        runs = []
        for _ in range(args.rounds):
            runs.append((run_ours(db, settings, args.n, args.concurrency),
                         run_dbos(python, url, args.n, args.concurrency)))
    print(f"DBOS bench: {args.n} orders per round at concurrency {args.concurrency}, {args.rounds} alternating "
          f"rounds; ours = intake handler in-process, DBOS = a workflow per order (step + durable sleep)")
    print(f"ours: median {statistics.median(o for o, _ in runs):.0f} orders/s; "
          f"DBOS: median {statistics.median(d for _, d in runs):.0f} orders/s")
    ratios = [o / d for o, d in runs]
    print(f"ours / DBOS: median {statistics.median(ratios):.1f}x (rounds: {', '.join(f'{r:.1f}' for r in ratios)})")


if __name__ == "__main__":
    main()
