"""bench.intake_since: an earlier commit's tree with this tree's bench files over it, and the
figures read from what `bench.intake` really prints."""

import subprocess
import sys

import pytest

from bench._common import ROOT
from bench.intake_since import BENCH_FILES, export, parse


def git(repository, *args):
    return subprocess.run(["git", "-C", str(repository), "-c", "user.name=bench", "-c", "user.email=bench@localhost",
                           *args], capture_output=True, text=True, check=True).stdout.strip()


def test_an_earlier_tree_gets_this_trees_bench_files(tmp_path):
    repository, into = tmp_path / "repository", tmp_path / "into"
    (repository / "bench").mkdir(parents=True)
    (repository / "shared").mkdir()
    (repository / "bench" / "intake.py").write_text("old bench\n")
    (repository / "shared" / "code.py").write_text("old code\n")
    git(tmp_path, "init", "-q", str(repository))
    git(repository, "add", ".")
    git(repository, "commit", "-q", "-m", "earlier")
    earlier = git(repository, "rev-parse", "HEAD")
    (repository / "shared" / "code.py").write_text("newer code\n")
    git(repository, "commit", "-q", "-am", "later")
    into.mkdir()

    export(earlier, into, repository)

    assert (into / "shared" / "code.py").read_text() == "old code\n"  # the earlier commit's, not the later
    for name in BENCH_FILES:  # this tree's, over the earlier ones or beside them
        assert (into / name).read_bytes() == (ROOT / name).read_bytes()
    with pytest.raises(SystemExit, match="git archive no-such-commit failed"):
        export("no-such-commit", into, repository)


def test_the_figures_are_read_from_a_real_bench_intake_run():
    result = subprocess.run([sys.executable, "-m", "bench.intake", "--n", "1600", "--rounds", "1"], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = parse(result.stdout)
    # 200 webhooks a client: a steady window (bench.intake.steady_rate) after each one's first 10
    assert len(figures["ratios"]) == 1 and figures["ratios"][0] > 0
    assert len(figures["cpu"]) == 1 and figures["cpu"][0] > 0
    assert len(figures["intake"]) == 1 and figures["intake"][0] > 0
    assert len(figures["pgbench"]) == 1 and figures["pgbench"][0] > 0
    with pytest.raises(ValueError, match="no line matching"):
        parse(result.stdout.replace("/ pgbench, steady", "/ pgbench steady"))
