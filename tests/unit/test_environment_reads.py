"""The environment is read in one place: `shared/config.py` (Settings and its sections, and
`Runtime` for what the platform says before any settings are built). Nothing else under
`shared/`, `functions/` or `main.py` reads `os.environ` or `os.getenv`.

`devstack/` and `bench/` are launchers: they build an environment for the processes they start,
so they are not held to this."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
READS = re.compile(r"\bos\.environ\b|\bgetenv\b|\bfrom os import\b[^\n]*\benviron\b|\bputenv\b")

# The few files that must touch the environment anyway, each with its reason and how often.
ALLOWED = {
    # The operator CLI's `load_stack_env` writes the running local stack's `.local/stack.env`
    # into its own process environment (when the shell names no database), where
    # `Settings.from_env()` then reads it: a write for config to read, not a read of a setting.
    "shared/operator.py": 1,
}


def _sources() -> list[Path]:
    return [ROOT / "main.py", *sorted((ROOT / "shared").rglob("*.py")), *sorted((ROOT / "functions").rglob("*.py"))]


def test_no_environment_read_outside_config():
    found = {}
    for path in _sources():
        relative = path.relative_to(ROOT).as_posix()
        if relative == "shared/config.py":
            continue
        hits = [n for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if READS.search(line)]
        if len(hits) != ALLOWED.get(relative, 0):
            found[relative] = hits
    assert found == {}, f"read the environment through shared.config (Settings or Runtime): {found}"


def test_the_check_sees_a_read():
    assert READS.search('level = os.environ.get("LOG_LEVEL")')
    assert READS.search('os.getenv("X")')
    assert READS.search("from os import environ")
    assert not READS.search("settings.environment_name")
