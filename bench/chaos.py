"""Issue 8's fault-injection scenarios at full size, against the real local stack at stock settings.

    .venv/bin/python -m bench.chaos                       # every scenario, one after another
    .venv/bin/python -m bench.chaos --scenario sigkill    # one (repeatable); --ci for the CI sizes

Runs the same functions as tests/chaos (tests/chaos/scenarios.py, sizes in
tests/chaos/sizes.py) and prints, per scenario, requests by status, sessions,
emails by kind, refund calls, lost/doubled counts, seconds and the problems
found. Every wait is bounded, so it stops by itself; exit status 1 if any
scenario found a problem.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("NO_GCE_CHECK", "true")

from tests.chaos.harness import ChaosWorld  # noqa: E402
from tests.chaos.registry import SCENARIOS  # noqa: E402
from tests.chaos.sizes import CI, FULL  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS),
                        help="run only this scenario (repeatable)")
    parser.add_argument("--ci", action="store_true", help="the CI sizes instead of the full ones")
    args = parser.parse_args(argv)
    sizes = CI if args.ci else FULL
    failed = 0
    started = time.monotonic()
    with ChaosWorld() as world:
        for name in args.scenario or list(sizes):
            began = time.monotonic()
            try:
                report = SCENARIOS[name](world, **sizes[name])
            except Exception as exc:  # noqa: BLE001 - one broken scenario does not stop the others
                print(f"\n== {name} {sizes[name]}: crashed: {type(exc).__name__}: {exc}", flush=True)
                failed += 1
                continue
            failed += bool(report.problems)
            print(f"\n== {name} {sizes[name]} — {time.monotonic() - began:.0f} s — "
                  f"{'OK' if not report.problems else 'FAILED'}", flush=True)
            for key, value in report.figures.items():
                print(f"  {key}: {json.dumps(value, default=str)}")
            for problem in report.problems:
                print(f"  PROBLEM: {problem}")
    print(f"\n{failed} of {len(args.scenario or sizes)} scenarios found problems; "
          f"{time.monotonic() - started:.0f} s in all", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
