"""Moved to `shared.ports`. Kept only while `shared.adapters.tasks` (changed on another branch)
still imports its names from here; delete once that import reads `shared.ports`."""

from shared.ports import Outcome, TaskScheduler, TimerTask

__all__ = ["Outcome", "TaskScheduler", "TimerTask"]
