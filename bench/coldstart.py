"""Cold start of `webhook_intake`: spawn → first answered order, RSS after 1,000 requests,
and the import profile.

    .venv/bin/python -m bench.coldstart [--spawns 5] [--requests 1000]

Each spawn is `functions-framework --target=webhook_intake` (gunicorn, as Cloud Functions
runs it) on the local backends and a migrated database; the clock runs from `Popen` until
a signed order webhook is answered 200 (polled every 2 ms until the port listens). The
median of the spawns is printed with each one. Interleaved with them, the floor: the
same command serving a function that only answers "ok" (the runtime's own start-up:
interpreter, functions-framework, gunicorn), so the ratio says what our code adds on a
machine whose absolute figures drift with its load. The last process then answers
`--requests` more orders one after another, and its RSS (master + worker) is read from
/proc. The import profile is `python -X importtime -c "import functions_framework, main; main.webhook_intake"`,
each module's own time summed by top-level package.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench._common import ROOT, SECRET, database, free_port, function_env, rss_mb, spawn_function, stop
from devstack.signing import order_body, standard_webhook_headers

TARGET_MS = 350


def post_order(conn: http.client.HTTPConnection, order_id: str) -> int:
    body = order_body(order_id, "buyer@example.com")
    headers = {**standard_webhook_headers(SECRET, body), "Content-Type": "application/json"}
    conn.request("POST", "/webhooks/orders", body=body, headers=headers)
    response = conn.getresponse()
    response.read()
    return response.status


def first_answer(port: int, tag: str, give_up: float = 30.0) -> float:
    """Seconds until an order is answered 200 on `port` (connection refused is retried)."""
    deadline = time.monotonic() + give_up
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            status = post_order(conn, f"cold-{tag}")
        except (ConnectionRefusedError, ConnectionResetError, http.client.RemoteDisconnected):
            time.sleep(0.002)
            continue
        finally:
            conn.close()
        if status != 200:
            raise RuntimeError(f"first order answered {status}")
        return time.monotonic()
    raise RuntimeError("no answer")


def spawn_to_first_order(env: dict[str, str], source: str = "main.py",
                         target: str = "webhook_intake") -> tuple[float, object]:
    port = free_port()
    started = time.monotonic()
    process = spawn_function(target, port, env, source=source)
    try:
        answered = first_answer(port, uuid.uuid4().hex[:10])
    except BaseException:
        stop(process)
        raise
    return (answered - started) * 1000, (process, port)


def floor_ms(env: dict[str, str], directory: Path) -> float:
    source = directory / "floor.py"
    source.write_text("def floor(request):\n    return 'ok'\n")
    ms, (process, _) = spawn_to_first_order(env, source=str(source), target="floor")
    stop(process)
    return ms


def import_profile(top: int = 14) -> tuple[float, list[tuple[float, str]]]:
    """(total ms, [(ms, package)]): importing the function's code, each module's own time
    summed by top-level package, heaviest first."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", "import functions_framework, main; main.webhook_intake"],
                            cwd=ROOT, env=function_env_for_imports(), capture_output=True, text=True, check=True)
    by_package: dict[str, float] = {}
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        own, _, name = line.removeprefix("import time:").split("|")
        package = name.strip().split(".")[0]
        by_package[package] = by_package.get(package, 0.0) + int(own) / 1000
    heaviest = sorted(((ms, name) for name, ms in by_package.items()), reverse=True)
    return sum(by_package.values()), heaviest[:top]


def function_env_for_imports() -> dict[str, str]:
    import os
    return {**os.environ, "NO_GCE_CHECK": "true"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spawns", type=int, default=5)
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args()
    with database(ORDER_WEBHOOK_SECRET=SECRET) as (_, settings):
        env = function_env(settings)
        times, floors = [], []
        process = None
        with tempfile.TemporaryDirectory(prefix="coldstart-floor-") as directory:
            for i in range(args.spawns):
                floors.append(floor_ms(env, Path(directory)))
                ms, (process, port) = spawn_to_first_order(env)
                times.append(ms)
                if i < args.spawns - 1:
                    stop(process)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            tag = uuid.uuid4().hex[:8]
            statuses = [post_order(conn, f"rss-{tag}-{n}") for n in range(args.requests)]
            conn.close()
            assert statuses.count(200) == args.requests, "every order must be answered 200"
            rss = rss_mb(process.pid)
        finally:
            stop(process)
    total, heaviest = import_profile()
    median = statistics.median(times)
    print(f"cold start bench: {args.spawns} spawns of functions-framework --target=webhook_intake "
          f"(local backends, migrated database)")
    print(f"spawn -> first answered order: median {median:.0f} ms "
          f"(spawns: {', '.join(f'{t:.0f}' for t in times)}); target <= {TARGET_MS} ms: "
          f"{'reached' if median <= TARGET_MS else 'NOT reached'} ({median / TARGET_MS:.2f} of the target)")
    ratios = [t / f for t, f in zip(times, floors)]
    print(f"floor (functions-framework answering 'ok'): median {statistics.median(floors):.0f} ms "
          f"(spawns: {', '.join(f'{t:.0f}' for t in floors)}); ours / floor: median "
          f"{statistics.median(ratios):.2f} (rounds: {', '.join(f'{r:.2f}' for r in ratios)})")
    print(f"RSS after {args.requests} more orders: worker {rss[-1]:.1f} MB, gunicorn master {rss[0]:.1f} MB "
          f"(they share the pages imported before the fork)")
    print(f"import profile (python -X importtime -c 'import functions_framework, main; main.webhook_intake'): {total:.0f} ms "
          f"in all; own time by package:")
    for ms, name in heaviest:
        print(f"  {ms:8.1f} ms  {name}")


if __name__ == "__main__":
    main()
