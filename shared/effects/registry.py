"""The one table of registered side effects: a new effect is its module under `shared/effects/`
and its line here (`"acme_notice": acme_notice.EFFECT,`), then its name in the `effects=(...)`
of each `Transition` that asks for it (`shared/domain/model.py`). No migration: `effect_runs.effect`
names no effect; `apply_effects` refuses a name not in this table, and the performer ignores one.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.effects import Effect

EFFECTS: dict[str, Effect] = {
    # "<name>": <module>.EFFECT,
}


def effect(name: str) -> Effect | None:
    """The registered effect called `name`, or None."""
    return EFFECTS.get(name)


def require(names: Iterable[str]) -> tuple[str, ...]:
    """`names`, each registered; LookupError naming the first that is not (a transition that asks
    for an effect nobody registered is a programming error, never a silently lost effect)."""
    names = tuple(names)
    for name in names:
        if name not in EFFECTS:
            raise LookupError(f"side effect {name!r} is not in shared.effects.registry.EFFECTS")
    return names


def names() -> list[str]:
    """The registered effects' names (the sweep re-drives only these)."""
    return sorted(EFFECTS)
