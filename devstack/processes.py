"""Processes read from /proc: the local stack's tests (tests/stack.py) and the benches
(`bench._common.run_apart`) find a process's parent and descendants here."""

from __future__ import annotations

from pathlib import Path


def _parent_in(stat: str) -> int:
    return int(stat.rsplit(")", 1)[1].split()[1])  # after the name: the state, then the parent's pid


def parent_of(pid: int) -> int:
    return _parent_in(Path(f"/proc/{pid}/stat").read_text())


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
        children.setdefault(_parent_in(stat), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found
