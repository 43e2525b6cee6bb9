"""A test-only side effect, "acme_notice" (issue 22): what a new side effect of a transition
brings, in its own module, and nothing else in the code base. The test registers it with its one
line in `shared.effects.registry.EFFECTS` and names it in a transition's `effects=(...)`.

`perform` stands in for a call to the effect's adapter: `CALLS` is what the outside world
received (in order), and `SCRIPT` what its next calls raise (an outage, a refusal).
"""

from __future__ import annotations

from shared.effects import Effect, EffectContext, EffectOrder

NAME = "acme_notice"
CALLS: list[tuple[str, str | None, int, str]] = []  # (session key, reason, attempt, idempotency key)
SCRIPT: list[Exception] = []


def perform(ctx: EffectContext, order: EffectOrder) -> None:
    CALLS.append((order.key, order.reason, ctx.attempt, ctx.idempotency_key))
    if SCRIPT:
        raise SCRIPT.pop(0)


EFFECT = Effect(NAME, perform, max_attempts=3)


def calls(key: str) -> list[tuple[str | None, int]]:
    """(reason, attempt) of each call made for one order."""
    return [(reason, attempt) for order, reason, attempt, _ in CALLS if order == key]
