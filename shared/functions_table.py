"""The deployed functions, one row each: entry point, trigger, exposure and
the secrets each one reads.

The one list of functions: `infra/config.sh` (what `deploy.sh` and
`infra/provision.sh` do) reads it through `python -m shared.functions_table
shell`, `main.py` serves its entry points, and the deploy tests hold a
function's `--set-secrets` and Secret Manager access to exactly the secrets
of its row. Pure data, no I/O, standard library only; importable without any
configuration.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from shlex import quote


@dataclass(frozen=True)
class Secret:
    """A secret environment variable a function reads, either always or only
    when a deployment setting has a value (e.g. SENDGRID_API_KEY only with
    EMAIL_BACKEND=sendgrid)."""

    variable: str
    when: tuple[str, str] | None = None

    def applies(self, deployment: Mapping[str, str]) -> bool:
        if self.when is None:
            return True
        setting, value = self.when
        return deployment.get(setting, DEPLOYMENT_DEFAULTS[setting]) == value


@dataclass(frozen=True)
class StoreSetting:
    """A store's non-secret setting, with the default infra/config.sh gives it. `example` set:
    the store cannot run without it, so deploy.sh refuses to deploy with it empty (a dry run
    shows the example instead)."""

    name: str
    default: str = ""
    example: str = ""


# Each store's switch (`<STORE>_ENABLED`, default false) and its non-secret settings: they go to
# every function that moves a session (`moves_sessions`) while the store is on, and to none while
# it is off. infra/config.sh and deploy.sh read both from here (`python -m shared.functions_table
# stores`) and name no store: a store is its rows here, not a line in a script.
STORE_SETTINGS: dict[str, tuple[StoreSetting, ...]] = {
    "SHOPIFY_ENABLED": (StoreSetting("SHOPIFY_SHOP_DOMAIN", example="your-shop.myshopify.com"),
                        StoreSetting("SHOPIFY_API_VERSION", "2025-10"),
                        StoreSetting("SHOPIFY_NOTIFY_CUSTOMER", "false")),
    "WOOCOMMERCE_ENABLED": (StoreSetting("WOOCOMMERCE_URL", example="https://shop.example"),),
    "OUTCOME_WEBHOOK_ENABLED": (StoreSetting("OUTCOME_WEBHOOK_URL",
                                             example="https://shop.example/age-verification/outcome"),),
}

# The ID provider new sessions' links are created with (`ID_PROVIDER`, a name in
# `shared.providers.registry.PROVIDERS`): the secrets that create links are each
# `when=("ID_PROVIDER", "<name>")`; the intake keeps every provider's webhook secrets whatever the
# choice, so a switch of provider never refuses the decisions of links already sent (their orders
# would expire and be refunded).
ID_PROVIDER_DEFAULT = "veriff"

# The deployment settings that decide which secrets are read, with the
# defaults infra/config.sh gives them (the stores' switches: false).
DEPLOYMENT_DEFAULTS = {
    "DB_IAM_AUTH": "true",
    "ID_PROVIDER": ID_PROVIDER_DEFAULT,
    "EMAIL_BACKEND": "sendgrid",
    "REFUND_BACKEND": "manual",
    "LIGHTSPEED_ENABLED": "true",
    **{switch: "false" for switch in STORE_SETTINGS},
}


def store_settings(deployment: Mapping[str, str]) -> list[str]:
    """The non-secret settings of the stores that are on under `deployment`."""
    return [setting.name for switch, settings in STORE_SETTINGS.items()
            if deployment.get(switch, DEPLOYMENT_DEFAULTS[switch]) == "true" for setting in settings]


def stores_shell() -> str:
    """The stores' switches and settings for infra/config.sh, before it reads the table: each
    one's default (`: "${NAME:=default}"`, kept when the environment or the --env-file set it),
    STORE_SWITCHES (passed on to `shell`), and STORE_REQUIRED, one "SWITCH SETTING EXAMPLE" a
    setting deploy.sh requires while its store is on."""
    lines = []
    for switch, settings in STORE_SETTINGS.items():
        lines.append(f": \"${{{switch}:=false}}\"")
        lines += [f": \"${{{s.name}:={s.default}}}\"" if s.default else f": \"${{{s.name}:=}}\"" for s in settings]
    required = [quote(f"{switch} {s.name} {s.example}") for switch, settings in STORE_SETTINGS.items()
                for s in settings if s.example]
    lines.append(f"STORE_SWITCHES=({' '.join(STORE_SETTINGS)})")
    lines.append(f"STORE_REQUIRED=({' '.join(required)})")
    return "\n".join(lines) + "\n"


# Every function connects to the database; only password authentication
# needs a secret for it.
_DATABASE = (Secret("DB_PASSWORD", when=("DB_IAM_AUTH", "false")),)


@dataclass(frozen=True)
class DeployedFunction:
    name: str
    entry_point: str
    signature: str  # "http" or "cloudevent"
    trigger: str | None  # the Pub/Sub topic of a cloudevent function
    public: bool  # reachable from the internet (--ingress-settings=all, unauthenticated)
    secrets: tuple[Secret, ...]
    behind_iap: bool = False  # staff reach it from the internet, through Identity-Aware Proxy
    # It moves sessions, so it decides which store actions a transition writes
    # (shared/stores/registry.py): it gets the stores' non-secret settings.
    moves_sessions: bool = False

    @property
    def ingress(self) -> str:
        """`all` for what the internet must reach (the webhooks; IAP-protected pages), else
        `internal-only` (Cloud Tasks, Scheduler and Eventarc of the project still reach it)."""
        return "all" if self.public or self.behind_iap else "internal-only"

    def secret_variables(self, deployment: Mapping[str, str] | None = None) -> set[str]:
        """The secrets this function reads under `deployment` (defaults otherwise)."""
        return {s.variable for s in (*self.secrets, *_DATABASE) if s.applies(deployment or {})}


FUNCTIONS: tuple[DeployedFunction, ...] = (
    DeployedFunction(
        "webhook-intake", "webhook_intake", "http", None, public=True,
        secrets=(
            Secret("ORDER_WEBHOOK_SECRET"),
            Secret("VERIFF_SHARED_SECRET"),  # X-HMAC-SIGNATURE of Veriff's webhooks (links in flight)
            Secret("VERIFF_API_KEY"),  # checked against X-AUTH-CLIENT
            Secret("LIGHTSPEED_CLIENT_SECRET", when=("LIGHTSPEED_ENABLED", "true")),
            Secret("CUSTOMER_KEY_SECRET"),  # the pepper of verify once's customer keys
            Secret("SHOPIFY_CLIENT_SECRET", when=("SHOPIFY_ENABLED", "true")),  # X-Shopify-Hmac-Sha256
            Secret("WOOCOMMERCE_WEBHOOK_SECRET", when=("WOOCOMMERCE_ENABLED", "true")),  # X-WC-Webhook-Signature
        ),
        moves_sessions=True,
    ),
    DeployedFunction("timer-expiry", "timer_expiry", "http", None, public=False, secrets=(),
                     moves_sessions=True),
    DeployedFunction("sweep", "sweep", "http", None, public=False, secrets=(), moves_sessions=True),
    DeployedFunction(
        "send-customer-email", "send_customer_email", "cloudevent", "customer-emails", public=False,
        secrets=(
            Secret("VERIFF_API_KEY", when=("ID_PROVIDER", "veriff")),  # creates the Veriff session behind the link
            Secret("SENDGRID_API_KEY", when=("EMAIL_BACKEND", "sendgrid")),
        ),
    ),
    DeployedFunction("record-analytics", "record_analytics", "cloudevent", "verification-events",
                     public=False, secrets=()),
    DeployedFunction(
        "request-refund", "request_refund", "cloudevent", "order-actions", public=False,
        # It performs the store actions (shared/handlers/store_actions.py): the stores' credentials.
        secrets=(
            Secret("REFUND_API_TOKEN", when=("REFUND_BACKEND", "http")),
            Secret("SHOPIFY_ADMIN_TOKEN", when=("SHOPIFY_ENABLED", "true")),
            Secret("WOOCOMMERCE_CONSUMER_KEY", when=("WOOCOMMERCE_ENABLED", "true")),
            Secret("WOOCOMMERCE_CONSUMER_SECRET", when=("WOOCOMMERCE_ENABLED", "true")),
            Secret("OUTCOME_WEBHOOK_SECRET", when=("OUTCOME_WEBHOOK_ENABLED", "true")),
        ),
        moves_sessions=True,
    ),
    DeployedFunction("operator-console", "operator_console", "http", None, public=False,
                     secrets=(Secret("CONSOLE_SECRET"), Secret("CUSTOMER_KEY_SECRET")), behind_iap=True,
                     moves_sessions=True),
)

BY_NAME = {f.name: f for f in FUNCTIONS}


def shell(deployment: Mapping[str, str], first: Sequence[str] = ()) -> str:
    """The table as bash declarations for infra/config.sh (which reads it through
    `python -m shared.functions_table shell`, so the list is written once): FUNCTIONS in
    deploy order (`first`, then the table's), and per function its entry point, trigger
    (`http` or a topic), exposure, ingress, whether it moves sessions (and so gets the
    stores' settings) and the secrets it reads under `deployment`;
    SECRET_ENVS is every secret any function may read; STORE_ENVS the settings of the stores
    that are on, for every function that moves a session."""
    unknown = set(deployment) - set(DEPLOYMENT_DEFAULTS)
    if unknown or set(first) - set(BY_NAME):
        raise ValueError(f"unknown deployment setting or function: {sorted(unknown | (set(first) - set(BY_NAME)))}")
    order = [*first, *(f.name for f in FUNCTIONS if f.name not in first)]

    def table(variable: str, value) -> str:
        items = " ".join(f"[{name}]={quote(value(BY_NAME[name]))}" for name in order)
        return f"declare -gA {variable}=({items})"

    every = dict.fromkeys(s.variable for f in FUNCTIONS for s in (*f.secrets, *_DATABASE))
    return "\n".join([
        f"FUNCTIONS=({' '.join(order)})",
        table("FN_TABLE_ENTRY", lambda f: f.entry_point),
        table("FN_TABLE_TRIGGER", lambda f: f.trigger or "http"),
        table("FN_TABLE_PUBLIC", lambda f: "true" if f.public else "false"),
        table("FN_TABLE_INGRESS", lambda f: f.ingress),
        table("FN_TABLE_MOVES_SESSIONS", lambda f: "true" if f.moves_sessions else "false"),
        # In the table's order, each once (a secret both a row and the database list name).
        table("FN_TABLE_SECRETS", lambda f: " ".join(dict.fromkeys(
            s.variable for s in (*f.secrets, *_DATABASE) if s.applies(deployment)))),
        f"SECRET_ENVS=({' '.join(every)})",
        f"STORE_ENVS=({' '.join(store_settings(deployment))})",
    ]) + "\n"


def main(argv: Sequence[str]) -> int:
    """`python -m shared.functions_table shell [--first NAME]... [SETTING=VALUE]...`, or
    `python -m shared.functions_table stores`."""
    if list(argv) == ["stores"]:
        sys.stdout.write(stores_shell())
        return 0
    if not argv or argv[0] != "shell":
        print("usage: python -m shared.functions_table shell [--first NAME]... [SETTING=VALUE]...\n"
              "       python -m shared.functions_table stores", file=sys.stderr)
        return 2
    first: list[str] = []
    deployment: dict[str, str] = {}
    args = iter(argv[1:])
    for arg in args:
        if arg == "--first":
            first.append(next(args, ""))
        elif "=" in arg:
            key, value = arg.split("=", 1)
            deployment[key] = value
        else:
            print(f"functions_table: unexpected argument {arg}", file=sys.stderr)
            return 2
    try:
        sys.stdout.write(shell(deployment, first))
    except ValueError as exc:
        print(f"functions_table: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
