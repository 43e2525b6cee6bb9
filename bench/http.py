"""Order webhooks over HTTP through `functions-framework` (gunicorn, as Cloud Functions runs
it), against the intake handler in-process, on the same database.

    .venv/bin/python -m bench.http [--n 1500] [--concurrency 8 16] [--rounds 3] [--backends local|cloud]

`webhook_intake` runs as its own process on the local backends with the stock pool
(DB_POOL_SIZE 2 + DB_MAX_OVERFLOW 2): each request verifies, parses, places the order
and relays its own outbox rows (two local task rows, three queued messages; no
dispatcher runs, so the deliveries stay rows). C client threads, each on one keep-alive
connection, send N distinct signed webhooks prepared beforehand. In-process is
`bench.intake`'s handler (no HTTP, no relay) at the same concurrency. Rounds alternate
HTTP and in-process; printed: webhooks/s, p50/p99 latency, and HTTP / in-process.

With `--backends cloud` the function uses the cloud adapters against Google's Pub/Sub
emulator and the Cloud Tasks emulator (started here as the test suite starts them):
each request's relay creates two tasks (in parallel) and publishes three messages.

Also (local backends), in-process on a stock pool (2+2) at the first concurrency: the handler followed by
its relay, with the local scheduler's task calls made one after another (as shipped) and
in parallel, the measurement behind `LocalTaskScheduler.parallel_calls = 1`.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import tempfile
import shutil
import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import text

from bench._common import SECRET, database, free_port, function_env, spawn_function, stop
from bench.intake import make_webhooks, ours
from shared import bootstrap
from shared.config import Settings
from shared.handlers import relay

P99_TARGET_MS = 50


def wait_until_up(port: int, give_up: float = 60.0) -> None:
    deadline = time.monotonic() + give_up
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("webhook_intake did not come up")


def over_http(port: int, hooks, concurrency: int) -> tuple[float, list[float]]:
    """(webhooks/s, latencies in ms) for all hooks sent by `concurrency` keep-alive clients."""
    latencies: list[float] = []
    lock = threading.Lock()
    share = [hooks[i::concurrency] for i in range(concurrency)]

    def client(mine) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        local = []
        for body, headers in mine:
            started = time.perf_counter()
            conn.request("POST", "/webhooks/orders", body=body, headers={**headers, "Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            local.append((time.perf_counter() - started) * 1000)
            if response.status != 200:
                raise RuntimeError(f"answered {response.status}")
        conn.close()
        with lock:
            latencies.extend(local)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(client, share))
    return len(hooks) / (time.perf_counter() - started), latencies


def in_process(db, settings, hooks, concurrency: int) -> tuple[float, list[float]]:
    handle = ours(db, settings)
    latencies: list[float] = []

    def timed(hook):
        started = time.perf_counter()
        status = handle(hook)
        latencies.append((time.perf_counter() - started) * 1000)
        return status

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        statuses = list(pool.map(timed, hooks))
    assert statuses.count("accepted") == len(hooks)
    return len(hooks) / (time.perf_counter() - started), latencies


def with_relay(container, parallel: bool):
    """The handler, then the request's own relay, as `webhook_intake` runs them."""
    from shared.adapters.tasks import LocalTaskScheduler

    class Scheduler(LocalTaskScheduler):
        parallel_calls = 8 if parallel else 1

    scheduler = Scheduler(container.db, container.settings.tasks.timer_url)
    handle = ours(container.db, container.settings)

    def one(hook) -> str:
        status = handle(hook)
        order_id = json.loads(hook[0])["orderId"]
        relay.relay(container.db, scheduler, container.publisher, order_ids=[order_id])
        return status
    return one


def relay_modes(container, concurrency: int, n: int) -> dict[str, float]:
    rates = {}
    for parallel in (False, True):
        handle = with_relay(container, parallel)
        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            assert list(pool.map(handle, make_webhooks(n))).count("accepted") == n
        rates["parallel" if parallel else "sequential"] = n / (time.perf_counter() - started)
    return rates


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@contextlib.contextmanager
def cloud_emulators() -> Iterator[dict[str, str]]:
    """The Pub/Sub and Cloud Tasks emulators, topics made; the function's environment for them."""
    from shared.adapters.events import PubSubPublisher
    from tests.emulators.cloud_tasks import CloudTasksEmulator, emulator_python
    from tests.emulators.pubsub import PROJECT, PubSubEmulator

    pubsub = PubSubEmulator().start()
    tasks_dir = tempfile.mkdtemp(prefix="bench-tasks-emulator-")
    tasks = CloudTasksEmulator(emulator_python(), Path(tasks_dir))
    try:
        tasks_host = tasks.start()
        os.environ["PUBSUB_EMULATOR_HOST"] = pubsub.host
        PubSubPublisher(PROJECT).ensure_topics()
        yield {"TASKS_BACKEND": "cloud", "EVENTS_BACKEND": "pubsub", "GOOGLE_CLOUD_PROJECT": PROJECT,
               "PUBSUB_EMULATOR_HOST": pubsub.host, "CLOUD_TASKS_EMULATOR_HOST": tasks_host}
    finally:
        tasks.stop()
        pubsub.stop()
        shutil.rmtree(tasks_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1500)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", choices=("local", "cloud"), default="local")
    args = parser.parse_args()
    runs = {c: {"http": [], "in-process": []} for c in args.concurrency}
    local_calls = []
    with contextlib.ExitStack() as stack:
        cloud = stack.enter_context(cloud_emulators()) if args.backends == "cloud" else {}
        db, settings = stack.enter_context(database(ORDER_WEBHOOK_SECRET=SECRET))
        port = free_port()
        process = spawn_function("webhook_intake", port, function_env(settings, **cloud))
        stock = bootstrap.build(Settings.from_env(function_env(settings)), migrate=False)
        try:
            wait_until_up(port)
            over_http(port, make_webhooks(200), 4)  # warm: the container, the pool, the plans
            in_process(db, settings, make_webhooks(200), 4)
            if not cloud:
                relay_modes(stock, args.concurrency[0], 100)
            for _ in range(args.rounds):
                for c in args.concurrency:
                    runs[c]["http"].append(over_http(port, make_webhooks(args.n), c))
                    runs[c]["in-process"].append(in_process(db, settings, make_webhooks(args.n), c))
                if not cloud:
                    local_calls.append(relay_modes(stock, args.concurrency[0], args.n // 2))
        finally:
            stop(process)
            stock.db.engine.dispose()
        with db.read() as conn:
            delivered, written = conn.execute(text(
                "SELECT count(delivered_at), count(*) FROM outbox WHERE order_id LIKE 'bench-%'")).one()

    print(f"HTTP bench: functions-framework --target=webhook_intake, {args.backends} backends"
          f"{' (emulators)' if args.backends == 'cloud' else ''}, stock pool (2+2); "
          f"N={args.n} signed order webhooks per round, {args.rounds} alternating rounds (medians)")
    print(f"{'':<22}{'webhooks/s':>11}{'p50 ms':>9}{'p99 ms':>9}")
    for c, modes in runs.items():
        for mode, results in modes.items():
            rate = statistics.median(r for r, _ in results)
            p50 = statistics.median(percentile(lat, 0.50) for _, lat in results)
            p99 = statistics.median(percentile(lat, 0.99) for _, lat in results)
            print(f"{mode + f', c={c}':<22}{rate:>11.0f}{p50:>9.1f}{p99:>9.1f}")
        ratios = [h[0] / i[0] for h, i in zip(modes["http"], modes["in-process"])]
        print(f"HTTP / in-process at c={c}: median {statistics.median(ratios):.2f} "
              f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)}); target >= 0.5")
    print(f"target: p99 <= {P99_TARGET_MS} ms at c=16 over HTTP")
    print(f"outbox rows delivered by the requests' own relays: {delivered:,} of {written:,} written "
          f"(the in-process handler rounds do not relay: their rows wait for the sweeper)")
    if not local_calls:
        return
    c = args.concurrency[0]
    for mode in ("sequential", "parallel"):
        print(f"in-process handler + relay, stock pool, local task calls {mode}, c={c}: "
              f"median {statistics.median(r[mode] for r in local_calls):.0f} webhooks/s")
    ratios = [h[0] / r["sequential"] for h, r in zip(runs[c]["http"], local_calls)]
    print(f"HTTP / in-process handler + relay (the same work without HTTP), c={c}: median "
          f"{statistics.median(ratios):.2f} (rounds: {', '.join(f'{r:.2f}' for r in ratios)})")
    ratios = [r["parallel"] / r["sequential"] for r in local_calls]
    print(f"local task calls parallel / sequential: median {statistics.median(ratios):.2f} "
          f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)})")


if __name__ == "__main__":
    main()
