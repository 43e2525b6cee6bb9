"""`bench.intake` on an earlier commit's code and on this tree's, runs alternated in one run: what
the changes since that commit did to the intake (its ratio to pgbench, its rate, its CPU a webhook).

    .venv/bin/python -m bench.intake_since COMMIT [--runs 4] [-- bench.intake's options]

COMMIT's tree is exported (`git archive`) to a temporary folder and this tree's bench files
(`BENCH_FILES`) are copied over it, so that both sides are measured the same way; COMMIT's code
must still fit them (`shared.handlers.intake.place_order`, `shared.inbound`'s webhook checks,
`Database.run_prepared`, `devstack.signing`), as 1076bca's (issue 22's review) does. Each run is
`python -m bench.intake` in its side's tree (this interpreter and its packages on both sides),
with its own PostgreSQL and schema. Each side's ratio is to pgbench on its own `place_order`: a
statement that writes more rows (this tree's also asks the store to hold the order) leaves less
of the round to the intake's Python, so the intake's own rate and CPU a webhook are printed
beside it.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench._common import ROOT

BENCH_FILES = ("bench/__init__.py", "bench/_common.py", "bench/intake.py", "devstack/processes.py")


def parse(output: str) -> dict[str, list[float]]:
    """One `bench.intake` run's figures: each round's steady intake/pgbench ratio, each round's
    CPU a webhook of the intake's process (µs), and the run's medians of the intake's steady
    rate (webhooks/s) and pgbench's (tps)."""
    def numbers(pattern: str) -> list[float]:
        found = re.search(pattern, output)
        if found is None:
            raise ValueError(f"bench.intake printed no line matching {pattern!r}")
        return [float(x) for x in re.split(r"[, ]+", found.group(1).strip())]

    return {"ratios": numbers(r"/ pgbench, steady: median [\d.]+ \(rounds: ([\d., ]+)\)"),
            "cpu": numbers(r"intake's process median \d+ µs a webhook \(rounds: ([\d, ]+)\)"),
            "intake": numbers(r"tps \(rounds, .*?\); ours (\d+) webhooks/s"),
            "pgbench": numbers(r"steady rates .*?: median (\d+) tps")}


def export(commit: str, into: Path, repository: Path = ROOT) -> None:
    """COMMIT's tree (of REPOSITORY) in INTO, with this tree's bench files over it."""
    archive = subprocess.run(["git", "-C", str(repository), "archive", commit], capture_output=True)
    if archive.returncode:
        raise SystemExit(f"git archive {commit} failed in {repository}: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    for name in BENCH_FILES:
        (into / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / name, into / name)


def run(tree: Path, options: list[str]) -> dict[str, list[float]]:
    """`python -m bench.intake OPTIONS` on TREE's code."""
    env = {**os.environ, "PYTHONPATH": str(tree), "NO_GCE_CHECK": "true"}
    result = subprocess.run([sys.executable, "-m", "bench.intake", *options], cwd=tree, env=env,
                            capture_output=True, text=True)
    if result.returncode:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"bench.intake failed on {tree}'s code (exit {result.returncode}): {last}")
    return parse(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("commit", help="the earlier commit (its code must fit this tree's bench files)")
    parser.add_argument("--runs", type=int, default=4, help="bench.intake runs a side, alternated")
    argv = sys.argv[1:]
    end = argv.index("--") if "--" in argv else len(argv)  # after --: bench.intake's options
    args, options = parser.parse_args(argv[:end]), argv[end + 1:]
    figures: dict[str, dict[str, list[float]]] = {"earlier": {}, "this tree": {}}
    with tempfile.TemporaryDirectory(prefix="intake-since-") as folder:
        earlier = Path(folder)
        export(args.commit, earlier)
        for _ in range(args.runs):  # alternated, so machine noise falls on both sides alike
            for side, tree in (("earlier", earlier), ("this tree", ROOT)):
                for name, values in run(tree, options).items():
                    figures[side].setdefault(name, []).extend(values)

    print(f"bench.intake {' '.join(options) or '(stock)'}: {args.commit} (with this tree's bench files) and this "
          f"tree, {args.runs} runs a side, alternated")
    print(f"{'side':<12}{'intake/pgbench, steady: median':>32}{'lowest':>8}{'rounds < 0.5':>14}"
          f"{'intake webhooks/s':>19}{'CPU µs a webhook':>18}{'pgbench tps':>13}")
    medians = {}
    for side, got in figures.items():
        ratios = got["ratios"]
        medians[side] = {name: statistics.median(values) for name, values in got.items()}
        label = args.commit[:10] if side == "earlier" else side
        print(f"{label:<12}{medians[side]['ratios']:>32.2f}{min(ratios):>8.2f}"
              f"{f'{sum(r < 0.5 for r in ratios)} of {len(ratios)}':>14}{medians[side]['intake']:>19.0f}"
              f"{medians[side]['cpu']:>18.0f}{medians[side]['pgbench']:>13.0f}")
    now, then = medians["this tree"], medians["earlier"]
    print(f"this tree / {args.commit[:10]} (medians): intake/pgbench {now['ratios'] / then['ratios']:.2f}x, the "
          f"intake's rate {now['intake'] / then['intake']:.2f}x, its CPU a webhook {now['cpu'] / then['cpu']:.2f}x, "
          f"pgbench's rate {now['pgbench'] / then['pgbench']:.2f}x")


if __name__ == "__main__":
    main()
