"""The one table of ID providers (`PROVIDERS`), as `shared.stores.registry.STORES` is of stores.

One line per provider: its webhook sources (`InboundSource` classes: `path`,
`from_settings(InboundSettings)`; a provider may post to several routes), its settings section
(taken from `ProviderSettings`), its adapter factory (its section -> the `VerificationProvider`
that creates a session and its link) and its local decision (its section, session key, provider
session id, `Decision`, date of birth, now -> the path, body and headers of its signed decision
webhook, which the local stack's provider page posts). The webhook routes
(`shared.inbound.sources`), the adapter new links are created with (`ID_PROVIDER`,
`adapter_for`), the intake's required secrets (`require_webhook_secrets`) and the provider page read it
when used: a new provider is its module, its line here, its settings section in
`shared/config.py` and its rows in `shared/functions_table.py`. The provider a link was created
with is recorded (`verification_sessions.provider`, `provider_sessions.provider`), and a decision
binds only to a provider session of its own provider.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from shared.config import ProviderSettings
from shared.errors import ConfigError
from shared.ports import VerificationProvider
from shared.providers.veriff import inbound as veriff
from shared.providers.veriff.adapter import make_verification_provider as make_veriff


@dataclass(frozen=True)
class Provider:
    """One provider's line (the module docstring says what each field is)."""

    sources: tuple[Any, ...]
    settings: Callable[[ProviderSettings], Any]
    adapter: Callable[[Any], VerificationProvider]
    local_decision: Callable[..., tuple[str, bytes, dict[str, str]]]


# provider name -> its line. A new provider is one line here.
PROVIDERS: dict[str, Provider] = {
    veriff.NAME: Provider((veriff.VeriffSource,), attrgetter("veriff"), make_veriff, veriff.local_decision),
}


def provider(name: str) -> Provider:
    """The line of provider `name` (ConfigError naming ID_PROVIDER when there is none)."""
    line = PROVIDERS.get(name)
    if line is None:
        raise ConfigError("ID_PROVIDER", f"is one of {', '.join(PROVIDERS)}")
    return line


def sources() -> list[Any]:
    """Every provider's webhook sources, in the table's order (each is served whichever
    provider creates new links: a session keeps the provider its link was created with)."""
    return [source for line in PROVIDERS.values() for source in line.sources]


def adapter_for(settings: ProviderSettings) -> VerificationProvider:
    """The adapter of the chosen provider (`ID_PROVIDER`), from its settings section."""
    line = provider(settings.id_provider)
    return line.adapter(line.settings(settings))


def require_webhook_secrets(settings: ProviderSettings) -> None:
    """Require the chosen provider's webhook secrets (ConfigError naming the first one unset):
    the intake cannot take its decisions without them."""
    line = provider(settings.id_provider)
    section = line.settings(settings)
    for source in line.sources:
        section.require(source.secret_variable)


def local_decision(settings: ProviderSettings, name: str, order_id: str, session_id: str, decision,
                   date_of_birth: str | None, now) -> tuple[str, bytes, dict[str, str]]:
    """Provider `name`'s signed decision webhook for the local provider page: path, body, headers."""
    line = provider(name)
    return line.local_decision(line.settings(settings), order_id, session_id, decision, date_of_birth, now)
