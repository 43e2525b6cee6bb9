"""Processes read from /proc: the local stack's tests (tests/stack.py) and the benches
(`bench._common.run_apart`) find a process's parent, descendants and liveness here."""

from __future__ import annotations

from pathlib import Path


def _after_name(stat: str) -> list[str]:
    """A /proc/PID/stat line's fields after the name (which may hold spaces and parentheses):
    the state, then the parent's pid, ..."""
    return stat.rsplit(")", 1)[1].split()


def parent_of(pid: int) -> int:
    return int(_after_name(Path(f"/proc/{pid}/stat").read_text())[1])


def process_alive(pid: int) -> bool:
    """Running (a zombie holds no port and counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return _after_name(stat)[0] != "Z"


def process_tree(root: int) -> list[int]:
    """`root` and every descendant, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        children.setdefault(int(_after_name(stat)[1]), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found
