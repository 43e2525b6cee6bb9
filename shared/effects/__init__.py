"""The seam for a new side effect of a transition (issue 22): one module per effect, one line in
`registry.EFFECTS`, and its name in the `effects=(...)` of the transitions that ask for it.

An effect is an `Effect`: its name, what it does (`perform(ctx, order)`: call its adapter or
port), and how a failure is retried. What it gets for free (`shared.handlers.effects`):

- its claim row (`effect_runs`, `due`) and its `order-actions` message commit in the same
  transaction as the state change, so a crash after the commit never loses it;
- the `order-actions` subscriber leases the row before `perform` (a duplicate delivery finds it
  leased or finished and performs nothing; `attempts` is the fencing number, so only the attempt
  holding the lease records), and records `done` (`effect.done`) or `failed` (`effect.failed`,
  its code only; the health numbers count it by effect);
- a failure other than `EffectFailed` is retried: the lease is kept for `retry_in(attempts)` (10 s
  doubling, by default) and the message retried, until `max_attempts`, then recorded failed;
- the sweep re-drives a run whose message was lost or whose attempt died (its lease passed),
  at most once a lease (`EMAIL_LEASE`).

A crash between `perform` and its record performs it again once the lease passes, so `perform`
should be idempotent by `ctx.idempotency_key` (stable per order and effect), as the refund and
the store actions are.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

_NAME = re.compile(r"[a-z][a-z0-9_]*")


class EffectFailed(Exception):
    """What `perform` raises for a failure that retrying cannot mend (the other side refused):
    recorded `failed` with `code` (a short code, never the other side's text), not retried.
    Caught by the performer; it never reaches an entry point."""

    def __init__(self, code: str) -> None:
        super().__init__(f"side effect failed: {code}")
        self.code = code


@dataclass(frozen=True)
class EffectOrder:
    """The order an effect is performed for, as the claim read it (no customer data)."""

    key: str  # the session key (`shared.domain.keys`)
    source: str | None
    store_ref: str | None  # the store's own id its API needs, when not the key's own id
    status: str | None  # the session's status when the run was claimed
    reason: str | None  # what the transition recorded (its reason, else the status it moved to)


@dataclass(frozen=True)
class EffectContext:
    """What `perform` may use: the instance's settings (to build its adapter), the time, its attempt
    number (the fencing number of its claim) and a key stable across attempts for idempotency."""

    settings: Any  # shared.config.Settings
    now: datetime
    attempt: int
    idempotency_key: str


@dataclass(frozen=True)
class Effect:
    """One kind of side effect. `perform` returns nothing when done; it raises EffectFailed for a
    permanent failure and anything else for one worth retrying (up to `max_attempts` attempts in
    all, waiting `retry_in(attempts)` between them)."""

    name: str
    perform: Callable[[EffectContext, EffectOrder], None] = field(repr=False)
    max_attempts: int = 5
    first_backoff_seconds: float = 10.0
    max_backoff_seconds: float = 3600.0

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"an effect's name is lower-case words: {self.name!r}")
        if self.max_attempts < 1:
            raise ValueError(f"effect {self.name}: max_attempts must be at least 1")

    def retry_in(self, attempts: int) -> float:
        """Seconds before the next attempt after `attempts` failed ones: doubling, capped."""
        return min(self.first_backoff_seconds * 2 ** min(max(attempts - 1, 0), 20), self.max_backoff_seconds)
