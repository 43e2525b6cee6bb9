"""Cold start of `webhook_intake`: spawn → first answered order, RSS after 1,000 requests,
and the import profile.

    .venv/bin/python -m bench.coldstart [--spawns 5] [--requests 1000]

Each spawn is `functions-framework --target=webhook_intake` (gunicorn, as Cloud Functions
runs it) on the local backends and a migrated database; the clock runs from `Popen` until
a signed order webhook is answered 200 (polled every 2 ms until the port listens). The
median of the spawns is printed with each one. The last process then answers
`--requests` more orders one after another, and its RSS (master + worker) is read from
/proc. The import profile is `python -X importtime -c "import functions_framework, main"`,
the heaviest top-level imports by cumulative time.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import subprocess
import sys
import time
import uuid

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


def spawn_to_first_order(env: dict[str, str]) -> tuple[float, object]:
    port = free_port()
    started = time.monotonic()
    process = spawn_function("webhook_intake", port, env)
    try:
        answered = first_answer(port, uuid.uuid4().hex[:10])
    except BaseException:
        stop(process)
        raise
    return (answered - started) * 1000, (process, port)


def import_profile(top: int = 12) -> tuple[float, list[tuple[float, str]]]:
    """(total ms, [(cumulative ms, top-level module)]) for importing the function's code."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", "import functions_framework, main"],
                            cwd=ROOT, env=function_env_for_imports(), capture_output=True, text=True, check=True)
    rows = []
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line or "cumulative" in line:
            continue
        _, cumulative, name = line.split("|")
        depth = (len(name) - len(name.lstrip())) // 2
        rows.append((depth, int(cumulative) / 1000, name.strip()))
    top_level = sorted(((ms, name) for depth, ms, name in rows if depth == 0), reverse=True)
    return sum(ms for ms, _ in top_level), top_level[:top]


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
        times = []
        process = None
        for i in range(args.spawns):
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
    print(f"RSS after {args.requests} more orders: {rss:.1f} MB (gunicorn master + worker)")
    print(f"import profile (python -X importtime -c 'import functions_framework, main'): {total:.0f} ms in all")
    for ms, name in heaviest:
        print(f"  {ms:8.1f} ms  {name}")


if __name__ == "__main__":
    main()
