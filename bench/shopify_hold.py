"""Shopify order webhook -> hold placed at the store, and -> link email accepted by SMTP (issue 21).

    .venv/bin/python -m bench.shopify_hold [--rate 20] [--seconds 60] [--restore-rate 1000]

The real local stack (`python -m devstack.run`, stock settings, the chaos harness's own
PostgreSQL, a real SMTP server) acting on a Shopify stand-in started as its own process
(`python -m devstack.stores.shopify`). Signed `orders/paid` webhooks are sent open-loop at
`--rate` a second for `--seconds` (each at its scheduled time, whatever the answers before
it), and per order the bench takes:

- (a) hold: the stand-in's receive time of the order's `fulfillmentOrderHold`, less the time the
  webhook was sent;
- (b) link: the SMTP server's accept time of the order's link email, less the same.

Prints the rate achieved, p50 / p99 / max of both, and what was missing after a bounded wait.
The stand-in's bucket defaults to Shopify Plus's (10,000 points, 1,000 a second): at 20 orders
a second a hold costs about 26 points (a read, the hold, the tag), 520 a second, more than the
Standard plan's 100 a second sustains (`--restore-rate 100` shows that queue instead).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("NO_GCE_CHECK", "true")

import requests  # noqa: E402

from tests.chaos.harness import ChaosWorld, customer_email  # noqa: E402
from tests.chaos.store_scenarios import HOLD, ShopifyProcess, gid, key, order_ids, order_request  # noqa: E402


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    cuts = statistics.quantiles(ordered, n=100, method="inclusive") if len(ordered) > 1 else [ordered[0]] * 99
    return {"p50": round(cuts[49] * 1000), "p99": round(cuts[98] * 1000), "max": round(ordered[-1] * 1000)}


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine since boot, from /proc/stat's `cpu` line."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def cpu_by_process() -> dict[str, int]:
    """CPU jiffies (user + system) used so far by each process of this machine, summed by a short
    name: the function a functions-framework process serves, else its program's name."""
    used: dict[str, int] = {}
    for stat in os.listdir("/proc"):
        if not stat.isdigit():
            continue
        try:
            with open(f"/proc/{stat}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{stat}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in argv if a]
        if words and words[0].startswith("postgres"):  # the server and its backends
            words = ["postgres"]
        name = words[words.index("--target") + 1] if "--target" in words else (
            next((w for w in words if w.startswith(("devstack.", "bench.", "tests."))), None)
            or os.path.basename(words[0]) if words else "?")
        used[name] = used.get(name, 0) + int(fields[11]) + int(fields[12])
    return used


def busy_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    """The machine's CPU use between two `cpu_times()` readings, 0..1 of every core."""
    total = after[1] - before[1]
    return round((after[0] - before[0]) / total, 3) if total else float("nan")


def _rate(times: list[float]) -> float | None:
    return round((len(times) - 1) / (max(times) - min(times)), 2) if len(times) > 1 and max(times) > min(times) else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=20.0, help="orders a second (default 20)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to send (default 60)")
    parser.add_argument("--max-available", type=float, default=10000.0)
    parser.add_argument("--restore-rate", type=float, default=1000.0)
    parser.add_argument("--settle", type=float, default=300.0, help="longest wait for the last hold and email")
    args = parser.parse_args(argv)
    count = int(args.rate * args.seconds)
    with ChaosWorld() as world, ShopifyProcess(max_available=args.max_available,
                                               restore_rate=args.restore_rate) as shop:
        # Stock settings plus the shop (the outcome webhook kept, as run-local.sh runs it).
        secret = "shpss_bench_" + os.urandom(8).hex()
        run = world.run("shophold", **shop.settings(secret))
        run.secrets["SHOPIFY_CLIENT_SECRET"] = secret
        with run:
            ids = order_ids(count)
            prepared = [order_request(run, i) for i in ids]
            sent_at: dict[int, float] = {}
            statuses: dict[int, object] = {}
            local = threading.local()
            start = time.monotonic() + 1.0

            def send(index: int) -> None:
                time.sleep(max(0.0, start + index / args.rate - time.monotonic()))
                request = prepared[index]
                session = getattr(local, "session", None) or requests.Session()
                local.session = session
                sent_at[ids[index]] = time.time()
                try:
                    statuses[ids[index]] = session.post(request.url, data=request.body, headers=request.headers,
                                                        timeout=30).status_code
                except requests.RequestException as exc:
                    statuses[ids[index]] = type(exc).__name__
                    local.session = None

            cpu_start, by_process_start = cpu_times(), cpu_by_process()
            with ThreadPoolExecutor(64, thread_name_prefix="sender") as pool:
                list(pool.map(send, range(count)))
            cpu_sending = busy_share(cpu_start, cpu_times())
            elapsed = cpu_times()[1] - cpu_start[1]
            by_process = {name: round((jiffies - by_process_start.get(name, 0)) / elapsed, 3)
                          for name, jiffies in cpu_by_process().items() if elapsed}
            by_process = dict(sorted(((n, v) for n, v in by_process.items() if v >= 0.005),
                                     key=lambda item: -item[1]))
            first, last = min(sent_at.values()), max(sent_at.values())
            late = sum(1 for i, oid in enumerate(ids) if sent_at[oid] - (first + i / args.rate) > 0.25)
            achieved = (count - 1) / (last - first) if last > first else float("nan")
            owner = {customer_email(key(i)): i for i in ids}

            def measured():
                holds = {}
                for m in shop.counts()["mutations"]:
                    if m["name"] == HOLD and m["order"] not in holds:
                        holds[m["order"]] = m["at"]
                links = {}
                for rcpts, kind, at in world.inbox.arrivals():
                    for rcpt in rcpts:
                        if kind == "link" and rcpt.lower() in owner and owner[rcpt.lower()] not in links:
                            links[owner[rcpt.lower()]] = at
                return holds, links

            deadline = time.monotonic() + args.settle
            while True:
                holds, links = measured()
                if (len(holds) >= count and len(links) >= count) or time.monotonic() > deadline:
                    break
                time.sleep(1.0)
            hold_latency = [holds[gid(i)] - sent_at[i] for i in ids if gid(i) in holds]
            link_latency = [links[i] - sent_at[i] for i in ids if i in links]
            answers: dict[str, int] = {}
            for status in statuses.values():
                answers[str(status)] = answers.get(str(status), 0) + 1
            counts = shop.counts()
            figures = {
                "orders": count, "target rate /s": args.rate, "achieved rate /s": round(achieved, 2),
                "sends more than 250 ms behind schedule": late, "webhook answers": answers,
                "store bucket": counts["bucket"], "THROTTLED answers": counts["throttled"],
                "webhook -> hold at the store, ms": percentiles(hold_latency),
                "webhook -> link email accepted by SMTP, ms": percentiles(link_latency),
                # what the stack delivered downstream: below the webhook rate, a queue grows
                "holds placed per second (first to last)": _rate(list(holds.values())),
                "link emails accepted per second (first to last)": _rate(list(links.values())),
                "orders without a hold": count - len(hold_latency),
                "orders without a link email": count - len(link_latency),
                "pool timeouts in logs": run.pool_timeouts(),
                # whether the machine itself is the limit: every process (the stack, PostgreSQL,
                # the stand-ins and this sender) shares these cores
                "cores": os.cpu_count(),
                "machine CPU busy while sending (share of all cores)": cpu_sending,
                "CPU share by process while sending": by_process,
            }
    print(f"\n== shopify_hold: {count} Shopify orders at {args.rate:g}/s for {args.seconds:g} s")
    for name, value in figures.items():
        print(f"  {name}: {json.dumps(value)}")
    missing = figures["orders without a hold"] + figures["orders without a link email"]
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
